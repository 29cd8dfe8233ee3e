"""worker.publish: hand-made runs published through the store, checked against numbers worked out by hand."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures import make_settings
from hand_run import UNIT0_MAX, UNIT0_MIN, WNIDS, publish_hand_run, publish_mixed4c_run

from app.main import create_app
from unitscope import metrics_sql, schema
from unitscope.data.runs import runs
from unitscope.data.source import ConnectionSource
from worker.categories import builtin_category


def test_si_and_in_top_in_bottom_match_a_hand_computed_example(tmp_path):
    db = tmp_path / "hand.duckdb"
    run_id = publish_hand_run(db, ranked_k=2)
    scores = {}
    with duckdb.connect(str(db), read_only=True) as con:
        for category in ("dog", "fish"):
            q = {"run_id": run_id, "layer": "conv1", "category": category}
            si = dict(con.execute(
                "SELECT unit, si FROM unit_si WHERE run_id = $run_id AND layer = $layer AND category = $category "
                "AND stat = 'max'", q,
            ).fetchall())  # fmt: skip
            counts = con.execute(metrics_sql.stored_counts_sql(), {**q, "k": 2, "pos_stat": "max", "neg_stat": "min"})
            for unit, in_top, in_bottom, *_ in counts.fetchall():
                scores[(category, unit)] = (si[unit], in_top, in_bottom)
        # Every stat on both sides: 2 units x ranked_k images.
        ranked = con.execute("SELECT stat, side, count(*) FROM unit_ranks GROUP BY ALL ORDER BY ALL").fetchall()
        assert ranked == [(stat, side, 4) for stat in sorted(schema.STATS) for side in ("bottom", "top")]
    # Unit 0, SI on max: min 0, max 4, so A_N = [1, 0, .5, .5, .25].
    #   dog: mean_C = (1 + .5) / 2 = .75, mean_rest = (0 + .5 + .25) / 3 = .25 -> SI = .75 / 1.0 = .75
    #   fish: mean_C = (0 + .5) / 2 = .25, mean_rest = (1 + .5 + .25) / 3 = 7/12 -> SI = .25 / (.25 + 7/12) = .3
    # Top 2 by max: image 0 (4), then images 2 and 3 tie at 2 and the smaller id wins -> {0, 2}.
    # Bottom 2 by min: images 1 and 4 (both -3) -> {1, 4}.
    assert scores[("dog", 0)][0] == pytest.approx(0.75)
    assert scores[("dog", 0)][1:] == (2, 0)
    assert scores[("fish", 0)][0] == pytest.approx(0.3)
    assert scores[("fish", 0)][1:] == (0, 1)
    # Unit 1 never varies: SI is NULL; all values tie, so ids {0, 1} are both top and bottom.
    assert scores[("dog", 1)] == (None, 1, 1)
    assert scores[("fish", 1)] == (None, 1, 1)


def test_published_responses_are_sorted_and_the_working_file_is_gone(tmp_path):
    db = tmp_path / "hand.duckdb"
    publish_hand_run(db, ranked_k=2)
    assert not Path(f"{db}.partial").exists() and not Path(f"{db}.publishing").exists()
    assert not Path(f"{db}.staged").exists()  # the staged arrays went with the working file
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT unit, image_id, act_max FROM responses").fetchall()  # storage order
        assert con.execute("SELECT count(*) FROM staged_rows").fetchone() == (0,)
        assert con.execute("SELECT status FROM runs").fetchall() == [("complete",)]
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(schema.SCHEMA_VERSION),
        )
    assert stored == sorted(stored, key=lambda r: (r[0], r[1]))
    assert [r[2] for r in stored[:5]] == UNIT0_MAX.tolist()


def test_publication_shows_a_bar_that_ends_at_every_step_of_every_unit(tmp_path, capfd):
    publish_hand_run(tmp_path / "hand.duckdb", ranked_k=2)
    bar = capfd.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    # conv1's 2 units x 5 steps: the sort, SI and ranks (one read), and the three derived writers (layer controls with
    # the labels, unit pages, basis SI); the last one it names is the last writer; the bracket holds elapsed<remaining
    # (the ETA).
    assert bar.startswith("publishing: 100%") and "10/10 [" in bar and "<" in bar, bar
    assert bar.endswith("conv1: basis si]"), bar


def test_a_second_publication_keeps_the_older_runs(tmp_path):
    db = tmp_path / "hand.duckdb"
    assert publish_hand_run(db, ranked_k=2) == 1
    assert publish_hand_run(db, ranked_k=3) == 2
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT run_id, count(*) FROM responses GROUP BY 1 ORDER BY 1").fetchall() == [
            (1, 10), (2, 10)
        ]  # fmt: skip
        assert con.execute("SELECT run_id, max(rank) FROM unit_ranks GROUP BY 1 ORDER BY 1").fetchall() == [
            (1, 2), (2, 3)
        ]  # fmt: skip


def test_counts_past_the_stored_ranks_are_computed_not_truncated(tmp_path: Path) -> None:
    """A run published with ranked_k = 2: k = 3 and 4 are counted over the responses, not over the 2 stored ranks."""
    db = tmp_path / "hand.duckdb"
    publish_hand_run(db, ranked_k=2)
    dog = np.array([w == "n02088364" for w in WNIDS])  # the beagles, images 0 and 2
    with TestClient(create_app(make_settings(db, tmp_path))) as client:
        for k in (2, 3, 4):
            body = client.get(f"/api/layers/conv1?k={k}").json()
            # Unit 0 by hand: max (4, 0, 2, 2, 1), top k by value then id; min (-1, -3, 0, -2, -3), bottom k likewise.
            top = sorted(range(5), key=lambda i: (-UNIT0_MAX[i], i))[:k]
            bottom = sorted(range(5), key=lambda i: (UNIT0_MIN[i], i))[:k]
            unit0 = body["units"][0]
            assert (unit0["in_top"], unit0["in_bottom"], unit0["overlap"], unit0["in_bottom_only"]) == (
                int(dog[top].sum()), int(dog[bottom].sum()), len(set(top) & set(bottom)),
                int(sum(dog[i] for i in set(bottom) - set(top)))), k
            assert body["source"] == ("precomputed" if k <= 2 else "computed"), k


def test_responses_are_read_in_storage_order_without_a_sort_and_stay_so_when_copied(tmp_path: Path) -> None:
    """Publication marks a run's responses as stored in (layer, unit, image_id) order, and readers then scan without
    ORDER BY: over several row groups, for the new run and for the run the next publication copies, the scan gives
    exactly the sorted rows."""
    images, units = 5_000, 80  # 400,000 rows: four of DuckDB's row groups
    wnids = tuple(("n02085620", "n01440764")[i % 2] for i in range(images))
    db = tmp_path / "order.duckdb"
    for seed in (1, 2):
        stats = np.random.default_rng(seed).normal(size=(images, units, 3)).astype(np.float32)
        publish_mixed4c_run(db, stats, wnids, (builtin_category("dog"),))
    with duckdb.connect(str(db), read_only=True) as con:
        keys = con.execute("SELECT key FROM meta WHERE key LIKE 'responses_in_order/%' ORDER BY key").fetchall()
        assert keys == [(metrics_sql.in_order_key(1),), (metrics_sql.in_order_key(2),)]
        assert all(run.in_order for run in runs(ConnectionSource(con, database=None)))
        for run_id in (1, 2):
            for stat in schema.STATS:
                q = {"run_id": run_id, "layer": "mixed4c", "first": 0, "last": units - 1}
                scanned = con.execute(metrics_sql.layer_matrix_sql(stat, in_order=True), q).fetchnumpy()["v"]
                ordered = con.execute(metrics_sql.layer_matrix_sql(stat), q).fetchnumpy()["v"]
                assert scanned.size == images * units
                np.testing.assert_array_equal(scanned, ordered)


def test_responses_split_by_chunk_of_units_are_the_batches_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A publication whose chunks hold a few units each (as at a million images) reads the staged files once, split by
    chunk (worker.staged_arrays.StagedArrays.chunks): each response and basis response is the value its batch held."""
    from worker import publish, staged_arrays

    monkeypatch.setattr(publish, "_CHUNK_BYTES", 90 * 3 * 4 * 4 * 3)  # 3 units a chunk: 6 chunks of 16 units
    monkeypatch.setattr(staged_arrays, "SPLIT_FROM", 3)
    splits: list[int] = []
    real = staged_arrays.StagedArrays.chunks
    monkeypatch.setattr(staged_arrays.StagedArrays, "chunks",
                        lambda self, layer, units, index, step: splits.append(step) or real(self, layer, units, index, step))
    rng = np.random.default_rng(5)
    wnids = tuple(w for w in ("n02085620", "n01440764", "n01443537") for _ in range(30))
    stats = rng.normal(size=(90, 16, 3)).astype(np.float32)
    basis = rng.normal(size=(90, 16, 3)).astype(np.float32)
    db = tmp_path / "d.duckdb"
    publish_mixed4c_run(db, stats, wnids, (builtin_category("dog"),), bases=(basis,))
    assert splits == [3, 3]  # the layer and its basis, each in chunks of 3 units
    with duckdb.connect(str(db), read_only=True) as con:
        for table, expected in (("responses", stats), ("basis_responses", basis)):
            rows = con.execute(f"SELECT unit, image_id, act_mean, act_max, act_min FROM {table} "
                               "ORDER BY unit, image_id").fetchnumpy()
            assert len(rows["unit"]) == 90 * 16
            got = np.stack([rows[c] for c in ("act_mean", "act_max", "act_min")], axis=1).reshape(16, 90, 3)
            np.testing.assert_array_equal(got, expected.transpose(1, 0, 2))
