"""The metric SQL in unitscope.metrics_sql, and the stored SI, against a brute-force numpy reference, on tie-heavy
data."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from unitscope import metrics_sql, schema
from worker.derived_ranks import write_ranks

N_IMAGES, N_UNITS = 300, 7
DOG, FISH = "n02085620", "n01440764"


@pytest.fixture(scope="module")
def db() -> tuple[duckdb.DuckDBPyConnection, np.ndarray, np.ndarray]:
    """An in-memory DB of small integer responses (so ties are everywhere) and one constant unit."""
    con = duckdb.connect()
    for ddl in schema.DDL:
        con.execute(ddl)
    rng = np.random.default_rng(7)
    values = rng.integers(-5, 5, size=(N_UNITS, N_IMAGES, 3)).astype(np.float32)
    values[3] = 1.0  # a unit whose response never varies
    is_cat = np.arange(N_IMAGES) % 3 == 0
    con.execute(
        "INSERT INTO images SELECT 1, i, 'x/' || i || '.JPEG', CASE WHEN i % 3 = 0 THEN ? ELSE ? END, "
        "NULL, 'x', 1, 1, 'RGB' FROM range(?) t(i)",
        [DOG, FISH, N_IMAGES],
    )
    con.execute("INSERT INTO categories VALUES (1, 'dog', ?)", [DOG])
    # a complete run with the layer, as the worker's ranks (worker.derived_ranks) read it
    con.execute(f"INSERT INTO {schema.RUNS} VALUES (1, ?, 'h', 'bvlc-googlenet', '/w', ?, '{{}}', '/x', ?, 'cpu', "
                "'float32', TIMESTAMP '2024-05-01', TIMESTAMP '2024-05-01')", [schema.RUN_COMPLETE, "ab" * 32, N_IMAGES])
    con.execute(f"INSERT INTO {schema.LAYERS_TABLE} VALUES (1, 'mixed4c', 0, ?, 'module.mixed4c')", [N_UNITS])
    units, images = np.meshgrid(np.arange(N_UNITS), np.arange(N_IMAGES), indexing="ij")
    frame = {  # noqa: F841 (read by DuckDB's replacement scan)
        "unit": units.ravel().astype(np.int16),
        "image_id": images.ravel().astype(np.int32),
        **{col: values[..., i].ravel() for i, col in enumerate(schema.STAT_COLUMN.values())},
    }
    con.execute("INSERT INTO responses SELECT 1, 'mixed4c', unit, image_id, act_mean, act_max, act_min FROM frame")
    return con, values, is_cat


@pytest.mark.parametrize("k", [1, 10, 50, 299, 300, 1000])
@pytest.mark.parametrize(("pos_stat", "neg_stat"), [("max", "min"), ("mean", "mean")])
def test_counts_match_a_full_sort_with_ties_broken_by_image_id(db, k, pos_stat, neg_stat):
    con, values, is_cat = db
    got = con.execute(
        metrics_sql.counts_sql(pos_stat, neg_stat), {"run_id": 1, "layer": "mixed4c", "category": "dog", "k": k}
    ).fetchall()
    assert [row[0] for row in got] == list(range(N_UNITS))
    p_i, q_i = schema.STATS.index(pos_stat), schema.STATS.index(neg_stat)
    for unit, in_top, in_bottom, overlap, in_bottom_only in got:
        p, q = values[unit, :, p_i], values[unit, :, q_i]
        top = np.lexsort((np.arange(N_IMAGES), -p))[:k]  # value descending, then image id
        bottom = np.lexsort((np.arange(N_IMAGES), q))[:k]
        only = np.setdiff1d(bottom, top)  # the bottom images that are not also in the top
        assert (in_top, in_bottom) == (is_cat[top].sum(), is_cat[bottom].sum())
        assert (overlap, in_bottom_only) == (len(np.intersect1d(top, bottom)), is_cat[only].sum())


@pytest.mark.parametrize("ranked_k", [40, schema.RANKED_K])
def test_stored_ranks_give_the_same_counts_as_the_responses(db, ranked_k):
    con, _, _ = db
    con.execute("DELETE FROM unit_ranks")
    write_ranks(con, 1, "mixed4c", ranked_k)
    for k in (1, 7, ranked_k):
        for pos_stat, neg_stat in (("max", "min"), ("mean", "max")):
            q = {"run_id": 1, "layer": "mixed4c", "category": "dog", "k": k}
            stored = con.execute(metrics_sql.stored_counts_sql(), {**q, "pos_stat": pos_stat, "neg_stat": neg_stat})
            assert stored.fetchall() == con.execute(metrics_sql.counts_sql(pos_stat, neg_stat), q).fetchall()


def test_the_stored_si_matches_its_definition_for_every_stat(db):
    """unit_si as publication stores it (worker.derived_ranks, stats.si_by_category from the layer's reads): the
    definition, by hand in float64, and NULL for the unit whose response never varies."""
    con, values, is_cat = db
    con.execute("DELETE FROM unit_ranks")
    con.execute("DELETE FROM unit_si")
    write_ranks(con, 1, "mixed4c", 40, ["dog"])
    got = con.execute("SELECT unit, stat, si FROM unit_si WHERE run_id = 1 AND layer = 'mixed4c' AND category = 'dog'"
                      " ORDER BY ALL").fetchall()
    assert len(got) == N_UNITS * len(schema.STATS)
    assert [si for unit, _, si in got if unit == 3] == [None] * 3
    for unit, stat, si in got:
        a = values[unit, :, schema.STATS.index(stat)].astype(np.float64)
        if a.max() == a.min():
            assert si is None
            continue
        a_n = (a - a.min()) / (a.max() - a.min())
        assert si == pytest.approx(a_n[is_cat].mean() / (a_n[is_cat].mean() + a_n[~is_cat].mean()), abs=1e-12)


@pytest.mark.parametrize("kind", metrics_sql.RANK_KINDS)
def test_rankings_order_by_value_then_image_id(db, kind):
    con, values, is_cat = db
    rows = con.execute(
        metrics_sql.ranking_sql(kind, "mean"), {"run_id": 1, "layer": "mixed4c", "unit": 2, "category": "dog", "n": 9}
    ).fetchall()
    v = values[2, :, 0]
    key = {"positive": -v, "negative": v, "near_zero": np.abs(v)}[kind]
    expected = np.lexsort((np.arange(N_IMAGES), key))[:9]
    assert [r[0] for r in rows] == expected.tolist()
    assert [r[3] for r in rows] == is_cat[expected].tolist()
    assert [r[4] for r in rows] == v[expected].tolist()


def test_stat_and_side_names_are_checked_before_they_reach_sql():
    with pytest.raises(ValueError, match="unknown stat"):
        metrics_sql.counts_sql("max; DROP TABLE responses", "min")
    with pytest.raises(ValueError, match="unknown side 'middle'"):
        metrics_sql.ranks_sql("max", "middle")


def test_stored_ranks_are_the_ranking_sqls_rows(db):
    """The worker's ranks (numpy) are ranks_sql's, row for row, where values tie everywhere, and zeros of both signs
    tie too."""
    con, _, _ = db
    _rewrite_max(con, "CASE WHEN act_max = 0 AND image_id % 2 = 0 THEN -act_max ELSE act_max END")
    assert con.execute("SELECT count(*) FROM responses WHERE act_max = 0 AND signbit(act_max)").fetchone()[0] > 0
    con.execute("DELETE FROM unit_ranks")
    write_ranks(con, 1, "mixed4c", 40)
    for stat in schema.STATS:
        for side in schema.SIDES:
            want = con.execute(f"SELECT unit, rank, image_id FROM ({metrics_sql.ranks_sql(stat, side)}) ORDER BY ALL",
                               {"run_id": 1, "layer": "mixed4c", "k": 40}).fetchall()
            got = con.execute("SELECT unit, rank, image_id FROM unit_ranks WHERE stat = ? AND side = ? ORDER BY ALL",
                              [stat, side]).fetchall()
            assert got == want and len(got) == N_UNITS * 40
    _rewrite_max(con, "CASE WHEN act_max = 0 THEN 0.0::FLOAT ELSE act_max END")  # the module's DB as it was
    assert con.execute("SELECT count(*) FROM responses WHERE act_max = 0 AND signbit(act_max)").fetchone()[0] == 0


def _rewrite_max(con: duckdb.DuckDBPyConnection, value: str) -> None:
    """Every response's act_max as `value` (SQL); UPDATE would keep a -0.0 that equals the value it replaces."""
    con.execute(f"CREATE TEMP TABLE rewritten AS SELECT * REPLACE ({value} AS act_max) FROM responses")
    con.execute("DELETE FROM responses")
    con.execute("INSERT INTO responses SELECT * FROM rewritten")
    con.execute("DROP TABLE rewritten")
