"""What publication stores for unit pages (worker.derived_unit) against what the server computes on the fly,
and the server's choice between them: stored rows for the stored parameters, its own SQL otherwise."""

from __future__ import annotations

import math
import os
from pathlib import Path

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures import COMPUTED_WHEN_MISSING, make_settings
from hand_run import BEAGLE, FISH, OTHER, TENCH, image, spec_for

from app.main import create_app
from unitscope import metrics_sql, schema, unit_summary
from unitscope.data import unit_tables
from unitscope.data.images import image_index
from unitscope.data.runs import require_run
from unitscope.data.source import ConnectionSource
from worker.store import WorkerStore

UNITS = 3
WNIDS = [BEAGLE] * 30 + [TENCH] * 25 + [OTHER] * 25  # 80 images: more than UNIT_ROW_MAX
LAYER = "conv1"


def synthetic_stats() -> np.ndarray:
    """[images, units, (mean, max, min)]: unit 0 random, unit 1 on a coarse grid (many ties, zeros), unit 2 constant."""
    rng = np.random.default_rng(7)
    stats = rng.normal(size=(len(WNIDS), UNITS, 3)).astype(np.float32)
    stats[:, 1, :] = np.round(stats[:, 1, :] * 2) / 2
    stats[:, 2, :] = 1.5
    return stats


def publish(db: Path, ranked_k: int) -> None:
    """A synthetic run, published through the worker's own store: the derived rows are written on the way."""
    stats = synthetic_stats()
    spec = spec_for(tuple(f"{w}/{i}.JPEG" for i, w in enumerate(WNIDS)), units=UNITS, categories=(FISH,))
    with WorkerStore.open(db) as store:
        store.begin(spec)
        half = len(WNIDS) // 2
        for batch in (range(half, len(WNIDS)), range(half)):  # out of order, as the worker may write them
            store.write_batch([image(i, WNIDS[i]) for i in batch], [], {LAYER: stats[list(batch)]})
        store.publish(ranked_k=ranked_k)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("stored") / "run.duckdb"
    publish(db, ranked_k=schema.RANKED_K)
    return db


CASES = [(unit, stat, category) for unit in range(UNITS) for stat in schema.STATS for category in ("dog", "fish")]


@pytest.mark.parametrize(("unit", "stat", "category"), CASES)
def test_stored_rows_equal_numpy_over_the_units_responses(published: Path, unit: int, stat: str, category: str) -> None:
    values = synthetic_stats()[:, unit, schema.STATS.index(stat)].astype(np.float64)
    wnids = np.array(WNIDS)
    members = {BEAGLE} if category == "dog" else {TENCH}
    is_cat = np.isin(wnids, list(members))
    q = {"run_id": 1, "layer": LAYER, "unit": unit, "category": category}
    with duckdb.connect(str(published), read_only=True) as con:
        # Read as the server reads them: a layer's table at once, sliced per unit (unitscope.data.unit_tables).
        source = ConnectionSource(con, database=None)
        run = require_run(source, 1)
        histogram = unit_tables.histogram(source, run, LAYER, category, unit, stat)
        lo, hi, cat, rest = histogram.lo, histogram.hi, histogram.category, histogram.rest
        assert (lo, hi) == (values.min(), values.max())
        bins = schema.HIST_BINS if hi > lo else 1  # unit 2 never varies: one bin
        width = (hi - lo) / bins if hi > lo else 1.0
        counts = {True: [0] * bins, False: [0] * bins}
        for v, side in zip(values.tolist(), is_cat.tolist()):  # one value at a time, in Python floats
            counts[side][min(math.floor((v - lo) / width), bins - 1)] += 1
        assert (list(cat), list(rest)) == (counts[True], counts[False])

        stored = unit_tables.class_rows(source, run, LAYER, stat).unit(unit)
        index_wnids = image_index(source, 1).wnids
        assert [index_wnids[code] for code in stored["code"]] == sorted(set(WNIDS))
        for code, n, mean, median in zip(*(stored[c].tolist() for c in ("code", "n", "mean", "median"))):
            v = values[wnids == index_wnids[code]]
            assert (n, median) == (len(v), np.median(v)) and mean == pytest.approx(v.mean(), rel=1e-12)

        n = schema.UNIT_ROW_MAX
        for kind in metrics_sql.RANK_KINDS:
            ranked = con.execute(metrics_sql.ranking_sql(kind, stat), {**q, "n": n}).fetchall()
            ids, stored_values = unit_tables.ranked_rows(source, run, LAYER, unit, kind, stat, n)
            assert list(zip(ids.tolist(), stored_values.tolist())) == [(r[0], r[4]) for r in ranked]
            assert len(ranked) == schema.UNIT_ROW_MAX
            assert unit_tables.ranked_rows(source, run, LAYER, unit, kind, stat, 5)[0].tolist() == ids[:5].tolist()


def test_histogram_counts_match_numpy(published: Path) -> None:
    stats = synthetic_stats()
    is_dog = np.array([w == BEAGLE for w in WNIDS])
    with duckdb.connect(str(published), read_only=True) as con:
        [(lo, hi, cat, rest)] = con.execute(
            f"""SELECT lo, hi, category_counts, rest_counts FROM {schema.UNIT_HISTOGRAMS}
                WHERE layer = ? AND category = 'dog' AND stat = 'max' AND unit = 0""", [LAYER]).fetchall()
    values = stats[:, 0, 1].astype(np.float64)
    bins = np.minimum(np.floor((values - lo) / ((hi - lo) / schema.HIST_BINS)), schema.HIST_BINS - 1).astype(int)
    assert (lo, hi) == (values.min(), values.max())
    assert list(cat) == np.bincount(bins[is_dog], minlength=schema.HIST_BINS).tolist()
    assert list(rest) == np.bincount(bins[~is_dog], minlength=schema.HIST_BINS).tolist()


def _refuse(*args: object, **kwargs: object) -> str:
    raise AssertionError("computed on the fly, but publication stored it")


UNIT_URLS = ["/api/layers/conv1/units/0", "/api/layers/conv1/units/1?n=64&near_stat=min&si_stat=mean",
             "/api/layers/conv1/units/2?category=fish", "/api/layers/conv1/units/1/classes?stat=min"]


def test_server_reads_the_stored_rows_and_computes_the_same_without_them(
    published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the derived rows, no unit SQL runs; with them deleted, the server computes the same JSON."""
    with monkeypatch.context() as m:
        for module, name in ((unit_summary, "bin_counts"), (unit_summary, "class_profiles"),
                             (metrics_sql, "ranking_sql")):
            m.setattr(module, name, _refuse)
        with TestClient(create_app(make_settings(published, tmp_path))) as c:
            stored = [c.get(url) for url in UNIT_URLS]
    assert [r.status_code for r in stored] == [200] * len(UNIT_URLS)

    bare = tmp_path / "bare.duckdb"
    bare.write_bytes(published.read_bytes())
    with duckdb.connect(str(bare)) as con:
        for table in COMPUTED_WHEN_MISSING:
            con.execute(f"DELETE FROM {table}")
    with TestClient(create_app(make_settings(bare, tmp_path))) as c:
        computed = [c.get(url) for url in UNIT_URLS]
    assert [r.json() for r in computed] == [r.json() for r in stored]
    page = stored[1].json()
    assert len(page["near_zero"]) == 64 and page["histogram"]["stat"] == "mean"
    classes = stored[3].json()["classes"]  # the dog category's one class marked, by mean descending
    assert [c["wnid"] for c in classes if c["is_category"]] == [BEAGLE] and len(classes) == 3
    assert [c["mean"] for c in classes] == sorted((c["mean"] for c in classes), reverse=True)


def test_rankings_past_the_stored_ranks_are_computed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """unit_ranks holds ranked_k images a side: a longer row comes from the ranking SQL, with the same images."""
    db = tmp_path / "short.duckdb"
    publish(db, ranked_k=4)
    calls: list[str] = []
    real = metrics_sql.ranking_sql

    def spy(kind: metrics_sql.RankKind, stat: str) -> str:
        calls.append(kind)
        return real(kind, stat)

    monkeypatch.setattr(metrics_sql, "ranking_sql", spy)
    with TestClient(create_app(make_settings(db, tmp_path))) as c:
        short = c.get("/api/layers/conv1/units/0?n=4").json()
        assert calls == []
        long = c.get("/api/layers/conv1/units/0?n=6").json()
    assert sorted(calls) == ["negative", "positive"]  # near zero: UNIT_ROW_MAX stored, not limited by ranked_k
    for kind in ("positive", "negative", "near_zero"):
        assert [e["image"] for e in long[kind][:4]] == [e["image"] for e in short[kind]]


def test_a_repeated_url_is_rendered_once_per_db_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The response cache (app.twin): the same URL again costs no context; a republished DB is read afresh."""
    from app.pages import unit as contexts

    db = tmp_path / "run.duckdb"
    publish(db, ranked_k=schema.RANKED_K)
    calls: list[int] = []
    real = contexts.build
    monkeypatch.setattr(contexts, "build", lambda *a, **k: calls.append(1) or real(*a, **k))
    # lazy: no reading ahead (app.warm), which would build unit 0 at start and again for the new file
    with TestClient(create_app(make_settings(db, tmp_path, lazy=True))) as c:
        first = [c.get(url) for url in ("/api/layers/conv1/units/0", "/layers/conv1/units/0")]
        again = [c.get(url) for url in ("/api/layers/conv1/units/0", "/layers/conv1/units/0")]
        assert len(calls) == 2
        assert [r.content for r in again] == [r.content for r in first]
        assert again[1].headers["link"] == first[1].headers["link"]
        assert again[0].headers["content-type"] == "application/json"
        fresh = tmp_path / "fresh.duckdb"  # republished, as the worker does: a new file renamed over the DB
        fresh.write_bytes(db.read_bytes())
        with duckdb.connect(str(fresh)) as con:
            con.execute(f"UPDATE {schema.UNIT_ROWS} SET value = value + 1 WHERE unit = 0 AND stat = 'max'")
        os.replace(fresh, db)
        after = c.get("/api/layers/conv1/units/0").json()
    assert len(calls) == 3
    assert [e["value"] for e in after["positive"]] == pytest.approx([e["value"] + 1 for e in first[0].json()["positive"]])


def test_a_column_alone_gives_its_numbers_in_a_block_to_the_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server computes one unit's column, publication a chunk of them: the same floats either way, and each
    ranking is the brute-force sort by (key, row)."""
    monkeypatch.setattr(unit_summary, "BLOCK_VALUES", 3_000)  # several blocks of columns per call
    rng = np.random.default_rng(3)
    images, columns = 997, 9
    values = rng.normal(size=(columns, images)).astype(np.float32).T  # a transposed C array, as layer_chunks gives
    values[:, 4] = np.round(values[:, 4])  # ties, zeros of both signs
    values[:, 5] = 0.25
    codes = rng.integers(0, 40, size=images)
    codes[codes == 7] = 8  # a class without images
    masks = [rng.random(images) < 0.3, codes < 10]
    block_counts, block_profiles = unit_summary.bin_counts(values, masks), unit_summary.class_profiles(values, codes, 40)
    keys = {"top": lambda v: -v, "bottom": lambda v: v, "near_zero": abs}
    ranked = {r: unit_summary.first_rows(values, schema.UNIT_ROW_MAX, r) for r in keys}
    for col in range(columns):
        alone = values[:, col:col + 1]
        counts, profile = unit_summary.bin_counts(alone, masks), unit_summary.class_profiles(alone, codes, 40)
        assert [counts.histogram(r, 0) for r in range(2)] == [block_counts.histogram(r, col) for r in range(2)]
        assert profile.rows(0) == block_profiles.rows(col) and len(profile.rows(0)) == 39
        for ranking, key in keys.items():  # Python's sort by (key, row), one value at a time
            brute = sorted(range(images), key=lambda i: (key(float(values[i, col])), i))[:schema.UNIT_ROW_MAX]
            assert ranked[ranking][col].tolist() == brute
            assert unit_summary.first_rows(alone, schema.UNIT_ROW_MAX, ranking)[0].tolist() == brute
    assert block_counts.histogram(0, 5).category == [int(masks[0].sum())]
