"""Publication's layer controls (worker.derived_layer): the stored AUROC, tails, split-half SIs and null
equal what the server computes on the fly, and the server reads them for the stored parameters only."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures import COMPUTED_WHEN_MISSING, make_settings
from hand_run import publish_hand_run, publish_mixed4c_run

from app.main import create_app
from unitscope import claim_rules, nulls, schema, stats, tails
from worker.categories import Category, builtin_category

DOGS = ("n02085620", "n02085782", "n02085936")
FISH = ("n01440764", "n01443537")  # tench, goldfish
OTHERS = (*FISH, "n01484850", "n01491361")
WNIDS = tuple(w for w in DOGS + OTHERS for _ in range(40))  # 280 images, 120 dogs, 80 fish
UNITS, SELECTIVE = 12, 4
IS_DOG = np.array([w in DOGS for w in WNIDS])


def _stats() -> np.ndarray:
    """[images, units, (mean, max, min)]: the first SELECTIVE units like dogs on max and dislike them on min."""
    rng = np.random.default_rng(3)
    n = len(WNIDS)
    stats = np.zeros((n, UNITS, 3), dtype=np.float32)
    stats[:, :, 1] = rng.normal(0.0, 1.0, (n, UNITS))
    stats[:, :, 2] = rng.normal(-1.0, 1.0, (n, UNITS))
    stats[IS_DOG, :SELECTIVE, 1] += 10.0
    stats[IS_DOG, :SELECTIVE, 2] -= 4.0
    stats[:, :, 0] = np.round((stats[:, :, 1] + stats[:, :, 2]) / 2, 1)  # ties on mean, for the midranks
    return stats


def _pair(tmp: Path, publish: Callable[[Path], object]) -> dict[str, Path]:
    """A published run ("stored"), and a copy without its derived rows ("computed": the server computes)."""
    stored, computed = tmp / "stored" / "s.duckdb", tmp / "computed" / "s.duckdb"
    stored.parent.mkdir()
    computed.parent.mkdir()
    publish(stored)
    shutil.copy(stored, computed)
    with duckdb.connect(str(computed)) as con:
        for table in COMPUTED_WHEN_MISSING:
            con.execute(f"DELETE FROM {table}")
    return {"stored": stored, "computed": computed, "tmp": tmp}


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _pair(tmp_path_factory.mktemp("layerpre"), lambda db: publish_mixed4c_run(db, _stats(), WNIDS, (builtin_category("dog"), Category("fish", FISH, "test"))))


def _get(dbs: dict[str, Path], which: str, url: str) -> dict:
    with TestClient(create_app(make_settings(dbs[which], dbs["tmp"] / which))) as c:
        response = c.get(url)
        assert response.status_code == 200, response.text
        return response.json()


def test_publication_stores_the_hand_worked_auroc_and_tails(tmp_path: Path):
    publish_hand_run(tmp_path / "h.duckdb", ranked_k=5)
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        rows = {(c, s, u): (a, lo, hi) for c, s, u, a, lo, hi in con.execute(
            f"SELECT category, stat, unit, auroc, tail_below, tail_above FROM {schema.UNIT_CONTROLS}").fetchall()}
        null = con.execute(f"SELECT category, si_stat, neg_stat, k, threshold, permutations, seed, count(*) "
                           f"FROM {schema.LAYER_NULL} GROUP BY ALL").fetchall()
    assert len(rows) == 2 * 3 * 2  # categories x stats x units
    # Unit 0 on max: dogs 4, 2 against 0, 2, 1 win 3 + (1 + 0.5 + 1) of 6 pairs; fish 0, 2 against 4, 2, 1 win 1.5.
    assert rows["dog", "max", 0][0] == pytest.approx(5.5 / 6)
    assert rows["fish", "max", 0][0] == pytest.approx(1.5 / 6)
    assert rows["dog", "max", 1][0] == 0.5  # a constant unit: all ties
    # The rest's (0, 1, 2) deciles are 0.2 and 1.8: no dog below, both above.
    assert rows["dog", "max", 0][1:] == (0.0, 1.0)
    # The null for the claims' grid: dog, SI on max or mean, negatives by min or mean, k = 1 (a sixth of 5 images,
    # at least 1), at the two thresholds.
    assert sorted(null) == [("dog", si, neg, 1, t, schema.NULL_PERMUTATIONS, schema.NULL_SEED, 3)
                            for si in ("max", "mean") for neg in ("mean", "min")
                            for t in sorted((claim_rules.SELECTIVE_SI, claim_rules.FIGURE_SI))]


def test_stored_auroc_and_tails_are_the_statistics_of_the_published_responses(dbs):
    stats = _stats()
    labels = {"dog": IS_DOG, "fish": np.array([w in FISH for w in WNIDS])}
    with duckdb.connect(str(dbs["stored"]), read_only=True) as con:
        for category, is_cat in labels.items():
            for stat, column in (("mean", 0), ("max", 1), ("min", 2)):
                got = con.execute(
                    f"SELECT auroc, tail_below, tail_above FROM {schema.UNIT_CONTROLS} "
                    "WHERE category = ? AND stat = ? ORDER BY unit", [category, stat]).fetchnumpy()
                values = stats[:, :, column]
                # AUROC by counting pairs, ties 1/2: nothing shared with stats.auroc's midranks.
                diff = values[is_cat][:, None, :] - values[~is_cat][None, :, :]
                pairs = ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(0, 1))
                np.testing.assert_allclose(got["auroc"], pairs, rtol=1e-12)
                # Tails: the share of the category beyond the rest's deciles, each decile interpolated by
                # hand between order statistics (tails.rest_quantiles, from the sorted order).
                for unit in range(UNITS):
                    rest = sorted(float(v) for v in values[~is_cat, unit])
                    cat = [float(v) for v in values[is_cat, unit]]
                    lo, hi = _decile(rest, 0.1), _decile(rest, 0.9)
                    assert got["tail_below"][unit] == sum(v < lo for v in cat) / len(cat), (category, stat, unit)
                    assert got["tail_above"][unit] == sum(v > hi for v in cat) / len(cat), (category, stat, unit)


def _decile(ordered: list[float], q: float) -> float:
    """The q quantile of sorted values, linear between the order statistics at (m - 1) q (numpy's default)."""
    h = (len(ordered) - 1) * q
    i = int(h)
    below, above = ordered[i], ordered[min(i + 1, len(ordered) - 1)]
    return below + (h - i) * (above - below)


@pytest.mark.parametrize("query", ["", "?threshold=0.65", "?category=fish", "?si_stat=mean&neg_stat=max"])
def test_the_stored_rows_give_the_pages_the_server_computes(dbs, query: str):
    for url in (f"/api/layers/mixed4c{query}", f"/api/claims{query}"):
        assert _get(dbs, "stored", url) == _get(dbs, "computed", url)


def test_the_default_pages_read_the_stored_rows(dbs, monkeypatch: pytest.MonkeyPatch):
    expected = {url: _get(dbs, "computed", url) for url in ("/api/claims", "/api/layers/mixed4c",
                                                             "/api/claims?threshold=0.65")}

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("computed, not read")

    for module, name in ((nulls, "permutation_null"), (nulls, "permutation_nulls"), (stats, "auroc"),
                         (stats, "auroc_by_category"), (tails, "tail_shares"),
                         (tails, "both_tail_shares"), (tails, "rest_quantiles"), (stats, "split_half_si")):
        monkeypatch.setattr(module, name, refuse)
    for url, body in expected.items():
        assert _get(dbs, "stored", url) == body
    selective = next(c for c in expected["/api/claims"]["claims"] if c["id"] == "selective")
    assert selective["value"] == SELECTIVE and selective["verdict"] == "holds"


def test_other_parameters_compute_the_null_and_read_the_rest(dbs, monkeypatch: pytest.MonkeyPatch):
    calls: list[dict] = []
    real = nulls.permutation_nulls

    def counted(*args: object, **kwargs: object) -> tuple[nulls.NullResult, ...]:
        calls.append(kwargs)
        return real(*args, **kwargs)

    # The server computes a null's thresholds together (its own and the grid's): one call per parameter set.
    monkeypatch.setattr(nulls, "permutation_nulls", counted)
    monkeypatch.setattr(stats, "auroc", lambda *a, **k: pytest.fail("AUROC is stored for every stat"))
    # The claims' grid is stored (SI on max or mean, negatives by min or mean, thresholds 0.65 and 0.7); the rest
    # is computed.
    for query, computes in (("", False), ("?threshold=0.65", False), ("?si_stat=mean", False),
                            ("?si_stat=mean&neg_stat=mean&threshold=0.65", False), ("?neg_stat=max", True),
                            ("?si_stat=min", True), ("?k=20", True), ("?threshold=0.6", True),
                            ("?category=fish", True)):
        calls.clear()
        body = _get(dbs, "stored", f"/api/layers/mixed4c{query}")
        assert len(calls) == computes, query
        assert body["null"]["permutations"] == schema.NULL_PERMUTATIONS


def test_the_server_names_the_stored_statistics():
    from app.data.layer_tests import NULL_STATS

    assert tuple(NULL_STATS) == nulls.NULL_STATISTICS


def test_a_constant_unit_reads_back_as_the_server_computes_it(tmp_path: Path):
    # The hand run's unit 1 never varies: its split-half SIs are NULL in the table, None on the page.
    dbs = _pair(tmp_path, lambda db: publish_hand_run(db, ranked_k=5))
    body = _get(dbs, "stored", "/api/layers/conv1")
    assert body == _get(dbs, "computed", "/api/layers/conv1")
    assert body["units"][1]["si_half_a"] is None and body["units"][1]["auroc"] == 0.5


def test_publication_a_few_units_at_a_time_stores_what_it_stores_in_one_chunk(dbs, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    """The derived tables read the layer a chunk of units at a time (scores.layer_chunks): at 5 units a chunk
    (3 chunks of 12 units, the last short) every derived row is the one-chunk publication's, the nulls included
    (counts exactly, floats to 1e-12)."""
    from unitscope.data import scores

    monkeypatch.setattr(scores, "CHUNK_BYTES", 4 * len(WNIDS) * 5)
    chunked = tmp_path / "chunked.duckdb"
    publish_mixed4c_run(chunked, _stats(), WNIDS, (builtin_category("dog"), Category("fish", FISH, "test")))
    tables = (schema.UNIT_CONTROLS, schema.UNIT_MEASURES, schema.LAYER_NULL, schema.UNIT_LABELS,
              schema.UNIT_LABEL_TERMS)
    for table in tables:
        rows = {}
        for which, db in (("one", dbs["stored"]), ("chunked", chunked)):
            with duckdb.connect(str(db), read_only=True) as con:
                rows[which] = con.execute(f"SELECT * EXCLUDE (run_id) FROM {table} ORDER BY ALL").fetchall()
        assert len(rows["chunked"]) == len(rows["one"]) > 0, table
        for got, want in zip(rows["chunked"], rows["one"], strict=True):
            # numpy's sums over a block of columns may round differently from one block to the next in the last bit
            for a, b in zip(got, want, strict=True):
                assert a == (pytest.approx(b, rel=1e-12, nan_ok=True) if isinstance(b, float) else b), (table, want)
    with duckdb.connect(str(chunked), read_only=True) as con:  # the grid's four nulls, each at both thresholds
        assert con.execute(f"SELECT count(DISTINCT (si_stat, neg_stat, threshold)) FROM {schema.LAYER_NULL}"
                           ).fetchone()[0] == 8
