"""The server's heavy work (app.heavy): computations of parameters publication did not store run in a bounded
pool, stop when their client leaves or their time is up, are refused past the queue (503 + Retry-After) or past
the memory budget, and never hold the threads that answer stored pages.

The DB is bench/make_scale_db.py's (3,000 synthetic images, mixed4c's 512 units); a layer page at a threshold
it did not store, with a 100,000-permutation null, computes for tens of seconds: long enough to watch.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fixtures import REPO, make_settings, serve

from app.heavy import HeavyPool
from app.main import create_app
from unitscope import nulls
from unitscope.cache import WAIT_GRACE_S, LruCache

IMAGES, UNITS = 3000, 512
SLOW = "/api/layers/mixed4c?threshold=0.61"  # not stored: SI, counts and the null are computed
STORED = "/api/layers/mixed4c/units/3"


@pytest.fixture(scope="module")
def scale_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("heavy") / "scale.duckdb"
    subprocess.run([sys.executable, str(REPO / "bench" / "make_scale_db.py"), "--images", str(IMAGES), "--layers",
                    "mixed4c", "--db", str(db)], cwd=REPO, check=True, capture_output=True, timeout=600)
    return db


@contextmanager
def server(db: Path, tmp: Path, **settings: object) -> Iterator[tuple[str, FastAPI]]:
    app = create_app(make_settings(db, tmp, null_permutations=100_000, **settings))
    with serve(app) as url:
        yield url, app


def wait_until(condition: object, limit_s: float) -> float:
    """Seconds until condition() held; fails past limit_s."""
    t0 = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - t0 < limit_s, f"not within {limit_s} s"
        time.sleep(0.02)
    return time.monotonic() - t0


def in_background(url: str, timeout_s: float) -> threading.Thread:
    """GET url in a thread that hangs up after timeout_s (an impatient client)."""
    def get() -> None:
        try:
            httpx.get(url, timeout=timeout_s)
        except httpx.TimeoutException:
            pass

    thread = threading.Thread(target=get, daemon=True)
    thread.start()
    return thread


def test_a_client_that_leaves_stops_its_computation(scale_db: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.heavy")
    with server(scale_db, tmp_path) as (url, app):
        pool: HeavyPool = app.state.heavy
        with pytest.raises(httpx.TimeoutException):
            httpx.get(url + SLOW, timeout=1.0)
        # The computation takes tens of seconds; stopped, it ends at its next checkpoint (a chunk, about 1 s).
        wait_until(lambda: pool.admitted == 0, 10)
        assert any("the client left" in r.getMessage() for r in caplog.records)
        # A stop leaves nothing behind: the same page, asked for patiently, is computed in full.
        assert httpx.get(url + STORED, timeout=30).status_code == 200


def test_a_full_pool_answers_503_with_retry_after_and_stored_pages_do_not_wait(scale_db: Path, tmp_path: Path) -> None:
    with server(scale_db, tmp_path, heavy_workers=1, heavy_queue=1) as (url, app):
        pool: HeavyPool = app.state.heavy
        clients = [in_background(url + f"/api/layers/mixed4c?threshold=0.7{i}", timeout_s=8) for i in range(2)]
        wait_until(lambda: pool.admitted == 2, 5)  # one computing, one queued
        refused = httpx.get(url + "/api/layers/mixed4c?threshold=0.81", timeout=10)
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert "try again in" in refused.json()["error"]["detail"]
        # Pages of stored results and /healthz answer at once (they would wait tens of seconds behind the pool).
        for path in (STORED, "/healthz", "/layers/mixed4c/units/7", "/api/layers/mixed4c/units/9"):
            t0 = time.monotonic()
            assert httpx.get(url + path, timeout=30).status_code == 200
            assert time.monotonic() - t0 < 5
        for c in clients:
            c.join(timeout=20)
        wait_until(lambda: pool.admitted == 0, 10)  # both stopped when their clients left


def test_a_second_request_for_a_result_being_computed_waits_in_the_pool_not_on_a_request_thread(
        scale_db: Path, tmp_path: Path) -> None:
    with server(scale_db, tmp_path, heavy_workers=1, heavy_queue=0, request_threads=1) as (url, app):
        pool: HeavyPool = app.state.heavy
        first = in_background(url + SLOW, timeout_s=6)
        wait_until(lambda: pool.admitted == 1, 5)
        # The same URL: its response is being computed; waiting for it would hold the one request thread.
        t0 = time.monotonic()
        again = httpx.get(url + SLOW, timeout=30)
        assert again.status_code == 503 and "Retry-After" in again.headers
        assert time.monotonic() - t0 < 5
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
        first.join(timeout=20)
        wait_until(lambda: pool.admitted == 0, 10)


def test_the_time_limit_stops_a_computation_with_503(scale_db: Path, tmp_path: Path) -> None:
    with server(scale_db, tmp_path, heavy_timeout=1.0) as (url, app):
        t0 = time.monotonic()
        response = httpx.get(url + SLOW, timeout=60)
        took = time.monotonic() - t0
        assert response.status_code == 503
        assert "longer than 1 s" in response.json()["error"]["detail"]
        assert "Retry-After" not in response.headers
        assert took < 10  # a chunk of the null after the limit, not the tens of seconds of the whole
        assert app.state.heavy.admitted == 0


def test_the_memory_estimate_refuses_what_would_not_fit(scale_db: Path, tmp_path: Path) -> None:
    # The estimate, by hand: 4 float32 copies of mixed4c's (3,000 x 512) responses = 24,576,000 bytes.
    need = 4 * 4 * IMAGES * UNITS
    for budget, status in ((need - 1, 503), (need, 200)):
        settings = make_settings(scale_db, tmp_path, heavy_memory=budget)
        with TestClient(create_app(settings)) as client:
            response = client.get("/api/layers/mixed4c?threshold=0.61")
            assert response.status_code == status, response.text
            assert client.get(STORED).status_code == 200  # stored results need no estimate
            if status == 503:
                assert "needs about 24.6 MB of memory" in response.json()["error"]["detail"]
                assert "--heavy-memory" in response.json()["error"]["detail"]
                assert "Retry-After" not in response.headers


def test_a_computed_page_through_the_pool_is_the_page_the_api_computes(scale_db: Path, tmp_path: Path) -> None:
    """The pool changes where a page is built, not what it says: the Python API (no pool) gives the same numbers."""
    import unitscope

    settings = make_settings(scale_db, tmp_path)
    with TestClient(create_app(settings)) as client:
        page = client.get("/api/layers/mixed4c?k=250&si_stat=mean").json()
    with unitscope.open(scale_db) as db:
        relation = db.run().layer("mixed4c").scores(k=250, si_stat="mean")
        rows = [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]
    by_unit = {row["unit"]: row for row in rows}
    assert len(page["units"]) == len(rows) == UNITS
    for unit in page["units"]:
        row = by_unit[unit["unit"]]
        assert (unit["in_top"], unit["in_bottom"], unit["auroc"]) == (row["in_top"], row["in_bottom"], row["auroc"])
        assert unit["si"] == pytest.approx(row["si"], abs=1e-12)


# ------------------------------------------------------------------------------- the parts


def test_cache_waiters_may_refuse_to_wait_and_a_failed_computation_is_redone() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow() -> str:
        calls.append("slow")
        started.set()
        release.wait(10)
        return "value"

    class Refused(Exception):
        pass

    def refuse() -> None:
        raise Refused

    cache: LruCache[str] = LruCache(4, on_wait=refuse)
    owner = threading.Thread(target=lambda: cache.get_or_compute("k", slow))
    owner.start()
    started.wait(5)
    t0 = time.monotonic()
    with pytest.raises(Refused):
        cache.get_or_compute("k", lambda: "other")
    assert WAIT_GRACE_S <= time.monotonic() - t0 < 2
    patient: LruCache[str] = cache
    patient.on_wait = None  # a cache without the hook waits for the owner and takes its value
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(patient.get_or_compute("k", lambda: "other")))
    waiter.start()
    time.sleep(0.3)
    release.set()
    owner.join(5)
    waiter.join(5)
    assert got == ["value"] and calls == ["slow"]

    # An owner that fails leaves the key to the next caller, who computes it.
    def fail() -> str:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("j", fail)
    assert cache.get_or_compute("j", lambda: "second") == "second"


def test_the_null_calls_its_checkpoint_between_chunks_and_stops_when_it_raises() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=(400, 20)).astype(np.float32)
    labels = np.arange(400) < 100
    values[labels, :5] += 3.0  # five units selective for the category
    bottom = np.argsort(values, axis=0)[:30].T
    seen: list[int] = []
    plain = nulls.permutation_nulls(values, bottom, labels, thresholds=(0.6,), permutations=300, seed=1)
    checked = nulls.permutation_nulls(values, bottom, labels, thresholds=(0.6,), permutations=300, seed=1,
                                      checkpoint=lambda: seen.append(1))
    def summary(results: tuple[nulls.NullResult, ...]) -> list[tuple[float, float, float]]:
        return [(s.observed, s.null_mean, s.p_value) for r in results
                for s in (r.selective, r.selective_negative, r.median_gap)]

    np.testing.assert_array_equal(summary(checked), summary(plain))
    assert len(seen) >= 1 and summary(plain)[0][0] == 5  # observed: the five selective units

    class Stop(Exception):
        pass

    def stop() -> None:
        raise Stop

    with pytest.raises(Stop):
        nulls.permutation_nulls(values, bottom, labels, thresholds=(0.6,), permutations=300, seed=1, checkpoint=stop)
