"""The server reads each layer's stored tables before its first request, and again when the worker publishes (app.warm)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures import make_settings
from hand_run import publish_mixed4c_run

from app.data.db import Reader
from app.main import create_app
from unitscope import schema
from worker.categories import builtin_category

# What a visitor opens first: the layers, a layer and its first unit. (Any other unit then reads only its own maps.)
FIRST_VISIT = ("/api/layers", "/layers", "/api/layers/mixed4c", "/layers/mixed4c", "/api/layers/mixed4c/units/0",
               "/layers/mixed4c/units/0")


def _publish(db: Path, seed: int) -> None:
    """A published run of 900 images (300 dogs) x 32 units, as the worker publishes it."""
    wnids = tuple(w for w in ("n02085620", "n01440764", "n01443537") for _ in range(300))
    stats = np.random.default_rng(seed).normal(0, 1, (len(wnids), 32, 3)).astype(np.float32)
    publish_mixed4c_run(db, stats, wnids, (builtin_category("dog"),))


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every query the server's readers run from now on."""
    seen: list[str] = []
    for name in ("rows", "arrays"):
        original = getattr(Reader, name)

        def counted(self: Reader, sql: str, params: object = None, original=original) -> object:  # noqa: ANN001
            seen.append(sql)
            return original(self, sql, params)

        monkeypatch.setattr(Reader, name, counted)
    return seen


def _visit(client: TestClient, queries: list[str]) -> int:
    """The queries a first visit runs, beyond the unit's own maps (read on each unit request, as for any unit)."""
    queries.clear()
    for url in FIRST_VISIT:
        assert client.get(url).status_code == 200, url
    return sum(f"FROM {schema.UNIT_MAPS}" not in sql for sql in queries)


def test_the_first_visit_reads_nothing_the_server_could_read_ahead(tmp_path: Path, queries: list[str]) -> None:
    db = tmp_path / "d.duckdb"
    _publish(db, 0)
    with TestClient(create_app(make_settings(db, tmp_path, lazy=True))) as c:
        assert _visit(c, queries) > 10  # a lazy server reads the layer's tables on these requests
        lazy_bodies = [c.get(url).content for url in FIRST_VISIT]
    queries.clear()
    with TestClient(create_app(make_settings(db, tmp_path))) as c:
        assert len(queries) > 10  # read at start, before any request
        assert _visit(c, queries) == 0
        # and what it serves is what the lazy server computed on request
        assert [c.get(url).content for url in FIRST_VISIT] == lazy_bodies


def test_a_newly_published_file_is_read_ahead_in_the_background(tmp_path: Path, queries: list[str]) -> None:
    db, fresh = tmp_path / "d.duckdb", tmp_path / "fresh" / "d.duckdb"
    _publish(db, 0)
    fresh.parent.mkdir()
    _publish(fresh, 1)
    with TestClient(create_app(make_settings(db, tmp_path))) as c:
        before = c.get("/api/layers/mixed4c/units/0").json()
        os.replace(fresh, db)  # as the worker publishes
        assert c.get("/healthz").status_code == 200  # the request that finds the new file
        for thread in threading.enumerate():
            if thread.name == "warm":
                thread.join(timeout=60)
        assert _visit(c, queries) == 0
        assert c.get("/api/layers/mixed4c/units/0").json() != before  # the new file's numbers


def test_a_run_without_the_default_category_still_starts_and_answers_as_before(tmp_path: Path) -> None:
    """Reading ahead asks for the default parameters; a run they do not fit is answered on request, as by a lazy
    server, and the server starts."""
    db = tmp_path / "d.duckdb"
    wnids = tuple(w for w in ("n01530575", "n01440764", "n01443537") for _ in range(300))  # brambling: a bird
    stats = np.random.default_rng(2).normal(0, 1, (len(wnids), 32, 3)).astype(np.float32)
    publish_mixed4c_run(db, stats, wnids, (builtin_category("bird"),))
    answers = {}
    for lazy in (True, False):
        with TestClient(create_app(make_settings(db, tmp_path, lazy=lazy))) as c:
            answers[lazy] = [(c.get(url).status_code, c.get(url).content) for url in FIRST_VISIT]
    assert answers[False] == answers[True]
    assert {code for code, _ in answers[True]} == {404}  # no category "dog" in this run


def test_reading_ahead_gives_up_on_a_file_no_longer_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file replaced while it is read ahead is left between two pages: its reading would only fill the cache with
    entries nobody asks for."""
    from app import warm as warm_module

    db, fresh = tmp_path / "d.duckdb", tmp_path / "fresh" / "d.duckdb"
    _publish(db, 0)
    fresh.parent.mkdir()
    _publish(fresh, 1)
    app = create_app(make_settings(db, tmp_path))
    layer_pages: list[object] = []
    real_layers, real_layer = warm_module.layers_page.build, warm_module.layer_page.build

    def layers_then_publish(reader: Reader, p: object) -> object:
        found = real_layers(reader, p)
        os.replace(fresh, db)  # the worker publishes while the server reads ahead
        app.state.db.generation()  # and a request finds the new file
        return found

    monkeypatch.setattr(warm_module.layers_page, "build", layers_then_publish)
    monkeypatch.setattr(warm_module.layer_page, "build", lambda *a, **k: layer_pages.append(a) or real_layer(*a, **k))
    with TestClient(app) as c:
        assert layer_pages == []  # the old file's layer pages were not built
        assert c.get("/api/layers/mixed4c").status_code == 200
