"""Fixtures shared by the whole suite: where the real shared data lives, skipping when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
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
