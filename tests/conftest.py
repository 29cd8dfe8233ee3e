"""Fixtures shared by the whole suite: the shared data (skipping when it is absent), the hand-made DB,
a real-worker DB and test clients over them. The builders behind them are in fixtures.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from fixtures import REPO, build_real_db, make_hand, make_settings

from app.main import create_app

# ../shared beside the checkout, or wherever UNITSCOPE_SHARED points.
SHARED = Path(os.environ.get("UNITSCOPE_SHARED", REPO.parent / "shared"))


def _shared_path(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def bvlc_weights() -> Path:
    """The real BVLC GoogLeNet weight folder (with weights/, SHA256SUMS, synset_words.txt)."""
    return _shared_path("models/bvlc_googlenet")


@pytest.fixture(scope="session")
def imagenet_sample() -> Path:
    """The 6,308-image ImageNet sample in ImageFolder layout."""
    return _shared_path("data/imagenet-sample")


@pytest.fixture
def hand(tmp_path: Path) -> dict[str, Path]:
    """A fresh hand-made DB for a test that changes or replaces it."""
    return make_hand(tmp_path)


@pytest.fixture(scope="module")
def hand_ro(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A hand-made DB shared by a module's tests, which only read it."""
    return make_hand(tmp_path_factory.mktemp("hand"))


@pytest.fixture(scope="module")
def client(hand_ro: dict[str, Path]) -> Iterator[TestClient]:
    """A TestClient over the shared hand-made DB."""
    with TestClient(create_app(make_settings(hand_ro["db"], hand_ro["root"]))) as c:
        yield c


@pytest.fixture(scope="session")
def real_db(tmp_path_factory: pytest.TempPathFactory, imagenet_sample: Path, bvlc_weights: Path) -> Path:
    """A DuckDB file written by the real worker from REAL_LIMIT images of the shared sample, all layers.

    UNITSCOPE_TEST_DB names an existing one instead (e.g. a full run, for the README's screenshots).
    """
    if given := os.environ.get("UNITSCOPE_TEST_DB"):
        return Path(given)
    return build_real_db(tmp_path_factory.getbasetemp(), imagenet_sample, bvlc_weights)


@pytest.fixture(scope="session")
def real_client(real_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A TestClient over the real-worker DB."""
    settings = make_settings(real_db, tmp_path_factory.mktemp("real-thumbs"))
    with TestClient(create_app(settings)) as c:
        yield c
