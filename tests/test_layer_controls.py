"""The layer's controls on the hand-made DB: selective units against the rest, chance levels, AUROC,
the permutation null, and a k that fits the run, each against its definition over the raw responses."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from fractions import Fraction
from math import comb
from pathlib import Path
from statistics import median
from urllib.parse import urlencode

import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures import (
    HAND_K,
    IMAGES,
    LAYERS,
    Page,
    expected_base_rate,
    expected_exclusive,
    expected_scores,
    in_category,
    make_settings,
)

from app.main import create_app
from app.params import ScoreParams
from unitscope import claim_rules, tails

N = len(IMAGES)
PARAMS = [
    ("mixed4c", {}),
    ("mixed4c", {"k": 2}),
    ("mixed4c", {"k": 2, "category": "fish", "si_stat": "mean", "threshold": 0.5}),
    ("mixed4c", {"k": 1001, "threshold": 0.4}),  # past the stored ranks: computed
    ("conv1", {"k": 3, "threshold": 0.5}),  # no stored SI or ranks
    ("conv1", {"category": "fish", "neg_stat": "max", "threshold": 0.3}),
]


def _k(p: ScoreParams) -> int:
    return HAND_K if p.k is None else p.k


def _exclusive_p(in_top: int, overlap: int, in_bottom_only: int, k: int, n_c: int) -> float:
    """P(as many category images or more among the bottom-only images, drawn from outside the top k), exactly."""
    depth = min(k, N)
    pool, pool_c, draws = N - depth, n_c - in_top, depth - overlap
    tail = sum(comb(pool_c, i) * comb(pool - pool_c, draws - i) for i in range(in_bottom_only, draws + 1))
    return float(Fraction(tail, comb(pool, draws))) if pool else 1.0


def _group(rows: list[tuple], base_rate: float, k: int, n_c: int, q: dict[int, float]) -> dict:
    """G by hand from (unit, si, in_top, in_bottom, overlap, in_bottom_only) rows and each unit's exclusive q."""
    at = sum(1 for r in rows if r[3] >= base_rate)
    exclusive = sum(1 for r in rows if q[r[0]] < 0.05)
    depth = min(k, N)
    shares = [r[5] / (depth - r[4]) if depth > r[4] else 0.0 for r in rows]
    return {
        "units": len(rows), "with_bottom_at_base_rate": at,
        "share_with_bottom_at_base_rate": at / len(rows) if rows else None,
        "median_in_top": median(r[2] for r in rows) if rows else None,
        "median_in_bottom": median(r[3] for r in rows) if rows else None,
        "median_overlap": median(r[4] for r in rows) if rows else None,
        "median_in_bottom_only": median(r[5] for r in rows) if rows else None,
        "median_bottom_only_share": median(shares) if rows else None,
        "with_bottom_only_enriched": exclusive,
        "share_with_bottom_only_enriched": exclusive / len(rows) if rows else None,
    }


def _groups(rows: list[tuple], threshold: float, base_rate: float, k: int, n_c: int) -> dict:
    chosen = [r[1] is not None and r[1] >= threshold for r in rows]
    q = dict(zip([r[0] for r in rows], _bh([_exclusive_p(r[2], r[4], r[5], k, n_c) for r in rows])))
    return {"selective": _group([r for r, c in zip(rows, chosen) if c], base_rate, k, n_c, q),
            "rest": _group([r for r, c in zip(rows, chosen) if not c], base_rate, k, n_c, q)}


@pytest.mark.parametrize(("layer", "params"), PARAMS)
def test_groups_match_the_units_and_the_raw_data(client: TestClient, layer: str, params: dict) -> None:
    body = client.get(f"/api/layers/{layer}?{urlencode(params)}").json()
    p = ScoreParams(**params)
    base = expected_base_rate(p.category, _k(p))
    from_api = [(u["unit"], u["si"], u["in_top"], u["in_bottom"], u["overlap"], u["in_bottom_only"])
                for u in body["units"]]
    raw = [(*scores, overlap, only) for scores, (_, overlap, only) in zip(
        expected_scores(layer, p.category, _k(p), p.pos_stat, p.neg_stat, p.si_stat),
        expected_exclusive(layer, p.category, _k(p), p.pos_stat, p.neg_stat))]
    n_c = int(in_category(p.category).sum())
    assert body["groups"] == _groups(from_api, p.threshold, base, _k(p), n_c) == _groups(
        raw, p.threshold, base, _k(p), n_c)
    assert body["groups"]["selective"]["units"] + body["groups"]["rest"]["units"] == len(LAYERS[layer])
    # /api/layers carries the same groups in its row for the layer.
    (row,) = [x for x in client.get(f"/api/layers?{urlencode(params)}").json() if x["name"] == layer]
    assert row["groups"] == body["groups"]
    assert (row["selective"], row["selective_bottom"]) == (
        row["groups"]["selective"]["units"], row["groups"]["selective"]["with_bottom_at_base_rate"])


def test_groups_by_hand_on_the_dog_units(client: TestClient) -> None:
    # k = 2, dogs are images 0-2 of 6: base rate 2 x 3/6 = 1. Defaults: SI and in_top on max, in_bottom on min,
    # threshold 0.7. From MIXED4C in fixtures.py:
    # - unit 0: max (10, 8, 6, 0, 2, 4) normalises to (1, .8, .6, 0, .2, .4): dogs' mean .8, the rest's .2,
    #   SI .8 / (.8 + .2) = .8, selective. Top 2 on max: images 0 (10), 1 (8), both dogs: in_top 2. Bottom 2 on
    #   min (-1, -2, -3, -9, -8, -7): images 3 (-9), 4 (-8), no dog: in_bottom 0, under the base rate.
    # - unit 1: max always 5, SI undefined (not selective). max and min all tied, ties to the smaller id: top 2
    #   and bottom 2 are both images 0, 1: in_top 2, in_bottom 2.
    # - unit 2: max (0, 0, 0, 3, 6, 9): every dog at the minimum, SI 0. Top 2 on max: images 5 (9), 4 (6):
    #   in_top 0. Bottom 2 on min (-5, -6, -4, 1, 1, 1): images 1 (-6), 0 (-5): in_bottom 2.
    # Selective {0}: in_top 2, in_bottom 0 (0 of 1 at the base rate). Rest {1, 2}: in_top (2, 0), median 1;
    # in_bottom (2, 2), median 2, both at the base rate.
    # The exclusive test: unit 0's top {0, 1} and bottom {3, 4} share nothing: overlap 0, in_bottom_only 0.
    # Unit 1's top and bottom are both {0, 1}: overlap 2, nothing left, in_bottom_only 0 (its in_bottom 2 is all
    # shared). Unit 2's top {4, 5} and bottom {0, 1}: overlap 0, in_bottom_only 2 of 2, but drawing 2 from the 4
    # images outside its top (3 of them dogs) gives 2 dogs with P = C(3,2) C(1,0) / C(4,2) = 1/2: not enriched.
    # Rest: overlap (2, 0) and in_bottom_only (0, 2), medians 1 and 1; dog shares of the bottom-only images 0 (none
    # left) and 2/2, median 0.5; none enriched.
    body = client.get("/api/layers/mixed4c?k=2").json()
    assert [(u["unit"], u["in_top"], u["in_bottom"], u["selective"]) for u in body["units"]] == [
        (0, 2, 0, True), (1, 2, 2, False), (2, 0, 2, False)]
    assert [(u["overlap"], u["bottom_only"], u["in_bottom_only"]) for u in body["units"]] == [
        (0, 2, 0), (2, 0, 0), (0, 2, 2)]
    assert body["units"][0]["si"] == pytest.approx(0.8) and body["units"][1]["si"] is None
    assert body["units"][2]["si"] == 0.0
    assert body["groups"] == {
        "selective": {"units": 1, "with_bottom_at_base_rate": 0, "share_with_bottom_at_base_rate": 0.0,
                      "median_in_top": 2, "median_in_bottom": 0, "median_overlap": 0, "median_in_bottom_only": 0,
                      "median_bottom_only_share": 0.0, "with_bottom_only_enriched": 0, "share_with_bottom_only_enriched": 0.0},
        "rest": {"units": 2, "with_bottom_at_base_rate": 2, "share_with_bottom_at_base_rate": 1.0,
                 "median_in_top": 1, "median_in_bottom": 2, "median_overlap": 1, "median_in_bottom_only": 1,
                 "median_bottom_only_share": 0.5, "with_bottom_only_enriched": 0, "share_with_bottom_only_enriched": 0.0},
    }


def _hypergeom_tail(x: int, k: int, n: int, n_c: int) -> Fraction:
    """P(X >= x) exactly: X the category images among k of n drawn without replacement, n_c in the category."""
    return sum((Fraction(comb(n_c, i) * comb(n - n_c, k - i), comb(n, k)) for i in range(max(x, 0), k + 1)),
               Fraction(0))


def _bh(p: list[float]) -> list[float]:
    """Benjamini-Hochberg by its definition: q_(i) = min over j >= i of p_(j) m / j, p sorted ascending."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    q = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):  # from the largest p down, keeping the running minimum
        i = order[rank - 1]
        running = min(running, p[i] * m / rank)
        q[i] = running
    return q


@pytest.mark.parametrize(("layer", "params"), PARAMS)
def test_p_and_q_values_are_the_hypergeometric_tails_and_their_bh(client: TestClient, layer: str,
                                                                  params: dict) -> None:
    body = client.get(f"/api/layers/{layer}?{urlencode(params)}").json()
    p = ScoreParams(**params)
    n_c = int(in_category(p.category).sum())
    raw = expected_scores(layer, p.category, _k(p), p.pos_stat, p.neg_stat, p.si_stat)
    for side, column in (("top", 2), ("bottom", 3)):
        # A k past the run counts every image: in_top and in_bottom are over min(k, N) images.
        want_p = [float(_hypergeom_tail(r[column], min(_k(p), N), N, n_c)) for r in raw]
        got_p = [u[f"p_{side}"] for u in body["units"]]
        assert got_p == pytest.approx(want_p, rel=1e-12)
        q = [u[f"q_{side}"] for u in body["units"]]
        assert q == pytest.approx(_bh(want_p), rel=1e-12)
        assert [u[f"significant_{side}"] for u in body["units"]] == [x < 0.05 for x in q]


def test_p_values_by_hand(client: TestClient) -> None:
    # k = 2 of 6 images, 3 dogs: P(X >= 2) = C(3,2) / C(6,2) = 3/15; P(X >= 0) = 1. Unit 0: in_top 2, in_bottom 0.
    # BH over the three units' p_top [.2, .2, 1]: q = [.2 * 3/2, .3, 1] = [.3, .3, 1].
    units = client.get("/api/layers/mixed4c?k=2").json()["units"]
    assert (units[0]["p_top"], units[0]["p_bottom"]) == (pytest.approx(0.2), 1.0)
    assert [u["q_top"] for u in units] == pytest.approx([0.3, 0.3, 1.0])


@pytest.mark.parametrize(("layer", "params"), PARAMS)
def test_auroc_is_the_pairwise_count_over_the_raw_responses(client: TestClient, layer: str, params: dict) -> None:
    body = client.get(f"/api/layers/{layer}?{urlencode(params)}").json()
    p = ScoreParams(**params)
    cat = in_category(p.category)
    column = ("mean", "max", "min").index(p.si_stat)
    for u in body["units"]:
        a = np.array(LAYERS[layer][u["unit"]], dtype=np.float32)[:, column]
        wins = sum((x > y) + 0.5 * (x == y) for x in a[cat] for y in a[~cat])
        assert u["auroc"] == pytest.approx(wins / (cat.sum() * (~cat).sum()), abs=1e-12), u["unit"]


@pytest.fixture(scope="module")
def null_client(hand_ro: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A server configured with its own permutation count and seed."""
    settings = make_settings(hand_ro["db"], tmp_path_factory.mktemp("null"), null_permutations=1200, null_seed=7)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize(("layer", "params"), PARAMS)
def test_the_null_reports_the_layer_statistics_with_the_configured_permutations(
    null_client: TestClient, hand_ro: dict[str, Path], tmp_path: Path, layer: str, params: dict
) -> None:
    url = f"/api/layers/{layer}?{urlencode(params)}"
    body = null_client.get(url).json()
    null = body["null"]
    assert (null["permutations"], null["seed"]) == (1200, 7)
    stats = {s["name"]: s for s in null["stats"]}
    assert list(stats) == ["selective", "selective_negative", "median_gap"]
    groups = body["groups"]
    # The observed values are the page's own numbers.
    assert stats["selective"]["observed"] == body["selective"] == groups["selective"]["units"]
    assert stats["selective_negative"]["observed"] == groups["selective"]["with_bottom_at_base_rate"]
    sel, rest = groups["selective"]["median_in_bottom"], groups["rest"]["median_in_bottom"]
    assert stats["median_gap"]["observed"] == (None if sel is None or rest is None else sel - rest)
    for s in stats.values():
        assert s["valid"] <= 1200 and (s["name"] == "median_gap" or s["valid"] == 1200)
        if s["p"] is not None:
            assert 1 / (s["valid"] + 1) <= s["p"] <= 1
    # Seeded: a second request, and a fresh server with the same settings, give the same null.
    assert null_client.get(url).json()["null"] == null
    fresh = make_settings(hand_ro["db"], tmp_path, null_permutations=1200, null_seed=7)
    with TestClient(create_app(fresh)) as again:
        assert again.get(url).json()["null"] == null


def test_the_null_depends_on_the_seed_and_is_shown_on_the_page(null_client: TestClient, client: TestClient) -> None:
    url = "/layers/mixed4c?k=2&threshold=0.5"
    default = client.get("/api" + url).json()["null"]
    assert (default["permutations"], default["seed"]) == (1000, 0)
    seeded = null_client.get("/api" + url).json()["null"]
    assert [s["null_mean"] for s in seeded["stats"]] != [s["null_mean"] for s in default["stats"]]
    page = Page(null_client.get(url).text)
    assert page.by_id("null-table").one("caption").text.startswith("Against chance: 1,200 permutations, seed 7 ")
    table = page.rows["null-table"][1:]
    assert [r[1] for r in table] == [f"{s['observed']:.2f}" if s["observed"] is not None else "n/a"
                                    for s in seeded["stats"]]
    assert [r[4] for r in table] == [f"{s['p']:.4f}" if s["p"] is not None else "n/a" for s in seeded["stats"]]


def test_a_category_with_every_image_has_no_null(hand: dict[str, Path], tmp_path: Path) -> None:
    import duckdb

    con = duckdb.connect(str(hand["db"]))
    con.execute("INSERT INTO categories SELECT 1, 'all', wnid FROM (SELECT DISTINCT wnid FROM images)")
    con.close()
    with TestClient(create_app(make_settings(hand["db"], tmp_path))) as c:
        body = c.get("/api/layers/mixed4c?category=all").json()
        assert body["null"] is None and all(u["auroc"] is None for u in body["units"])
        assert all(u["p_top"] == 1.0 for u in body["units"])
        notes = [p.text for p in Page(c.get("/layers/mixed4c?category=all").text).find_all("p", cls="note")]
        assert "No permutation null: the category or the rest has no image." in notes


def test_the_default_k_is_a_sixth_of_a_small_run_without_warning(client: TestClient) -> None:
    # Six images: the study's 1000 would need 6,000, so k = 6 // 6 = 1, and 2k <= 6: no overlap.
    assert HAND_K == 1
    for url in ("/api/layers/mixed4c", "/api/layers/mixed4c/units/0"):
        body = client.get(url).json()
        assert (body["k"], body["k_source"], body["warnings"]) == (1, "default", []), url
        assert "a sixth of the 6 images" in body["k_reason"]
    for row in client.get("/api/layers").json():
        assert (row["k"], row["k_source"], row["warnings"]) == (1, "default", [])
    page = Page(client.get("/layers/mixed4c").text)
    assert page.one("p", cls="k-reason").text.startswith("k = 1, a sixth of the 6 images")
    assert page.find_all("p", cls="warning") == []
    # The automatic k stays out of the links, so a shared link keeps meaning "the default".
    hrefs = page.hrefs()
    unit_links = [h for h in hrefs if "/units/" in h]
    assert unit_links and not any("k=" in h for h in unit_links)
    assert page.one("input", name="k").get("value") == ""  # the form leaves k to the default too


@pytest.mark.parametrize("k", [4, 6, 1000])
def test_an_explicit_k_that_overlaps_warns_in_json_and_on_the_page(client: TestClient, k: int) -> None:
    for url in (f"/layers/mixed4c?k={k}", f"/layers?k={k}", f"/layers/mixed4c/units/1?k={k}"):
        body = client.get("/api" + url).json()
        for ctx in body if isinstance(body, list) else [body]:
            assert (ctx["k"], ctx["k_source"]) == (k, "given")
            (warning,) = ctx["warnings"]
            assert warning == claim_rules.overlap_warning(k, N)
        (shown,) = Page(client.get(url).text).find_all("p", cls="warning")
        # From k = N on, top and bottom are every image (min(k, N)): not "share at least 2k - N" of N images.
        said = (f"share at least {2 * k - N:,} images" if k < N
                else f"the {N:,} images: each unit's top and bottom k are all")
        assert said in shown.text, url
    hrefs = Page(client.get(f"/layers/mixed4c?k={k}").text).hrefs()
    assert f"/layers/mixed4c/units/0?k={k}" in hrefs  # a given k is kept


def test_a_k_that_fits_gives_no_warning(client: TestClient) -> None:
    body = client.get("/api/layers/mixed4c?k=3").json()
    assert (body["k"], body["k_source"], body["warnings"]) == (3, "given", [])


def test_the_table_csv_and_scatter_show_the_controls(client: TestClient) -> None:
    url = "/layers/mixed4c?k=2&threshold=0.5"
    body = client.get("/api" + url).json()
    page = Page(client.get(url).text)
    header, *table = page.rows["units-table"]
    assert header == ["unit", "SI", "AUROC", "d′", "in_top", "p_top", "q_top", "in_bottom", "p_bottom", "q_bottom",
                      "overlap", "in_bottom_only", "label"]
    by_unit = {u["unit"]: u for u in body["units"]}  # the table opens sorted by SI
    assert sorted(int(row[0]) for row in table) == sorted(by_unit)
    for row in table:
        u = by_unit[int(row[0])]
        assert row[12] == (u["label"] or "")
        assert int(row[0]) == u["unit"] and row[2] == f"{u['auroc']:.3f}"
        assert row[3] == ("n/a" if u["d_prime"] is None else f"{u['d_prime']:.3f}")
        for side, column in (("top", 5), ("bottom", 8)):
            mark = " ✱" if u[f"significant_{side}"] else ""
            assert row[column:column + 2] == [f"{u[f'p_{side}']:.2g}", f"{u[f'q_{side}']:.2g}{mark}"]
    groups = page.rows["groups-table"]
    assert groups[1] == ["units", str(body["groups"]["selective"]["units"]), str(body["groups"]["rest"]["units"])]
    # The CSV carries the same values.
    rows = list(csv.DictReader(io.StringIO(client.get("/api/layers/mixed4c.csv?k=2&threshold=0.5").text)))
    for row, u in zip(rows, body["units"], strict=True):
        for name in ("p_top", "p_bottom", "q_top", "q_bottom", "auroc", "d_prime", "sparseness", "kurtosis"):
            assert (float(row[name]) if row[name] else None) == u[name]
        assert row["significant_top"] == str(int(u["significant_top"]))
        assert row["label"] == (u["label"] or "")
    # The scatter's marginal: one histogram of in_bottom per group, on the scatter's y axis.
    fig = page.figures["scatter-data"]
    marginals = {t["marker"]["color"]: t for t in fig["data"] if t["type"] == "histogram"}
    for color, selective in (("#d62728", True), ("#8c8c8c", False)):
        trace = marginals[color]
        assert (trace["xaxis"], trace["yaxis"], trace["histnorm"]) == ("x2", "y", "probability")
        assert trace["y"] == [u["in_bottom"] for u in body["units"] if u["selective"] == selective]
    assert fig["layout"]["xaxis2"]["domain"][0] > fig["layout"]["xaxis"]["domain"][1]


def test_layers_page_shows_selective_and_rest_side_by_side(client: TestClient) -> None:
    page = Page(client.get("/layers?k=2&threshold=0.5").text)
    body = client.get("/api/layers?k=2&threshold=0.5").json()
    table = page.rows["layers-table"][2:]
    for row, layer in zip(table, body, strict=True):
        sel, rest = layer["groups"]["selective"], layer["groups"]["rest"]
        assert row[0] == layer["name"]
        assert [int(row[2]), int(row[4]), int(row[8]), int(row[9])] == [
            sel["units"], sel["with_bottom_at_base_rate"], rest["units"], rest["with_bottom_at_base_rate"]]
        assert row[11] == f"{rest['median_in_top']:.1f}" and row[12] == f"{rest['median_in_bottom']:.1f}"
    shares = page.figures["layers-shares-data"]["data"]
    assert shares[0]["y"] == [x["groups"]["selective"]["share_with_bottom_at_base_rate"] for x in body]
    assert shares[1]["y"] == [x["groups"]["rest"]["share_with_bottom_at_base_rate"] for x in body]


def test_a_tail_is_taken_at_the_float32_decile_of_the_rest() -> None:
    """The rest's decile is interpolated in the responses' float32, as the server and older DBs take it: here
    1 + 0.1 x (one ulp above 1) rounds to 1 in float32 (1.0000000119 in float64), so a category image at 1 is not
    below it."""
    rest = [0.0, 1.0, float(np.nextafter(np.float32(1), np.float32(2))), *range(2, 11)]  # 12 values: the decile at 1.1
    values = np.array([*rest, 1.0], dtype=np.float32)[:, None]
    labels = np.arange(13) == 12
    assert tails.tail_shares(values, labels, upper=False)[0] == 0.0
    below, above = tails.both_tail_shares(values, labels)
    assert (below[0], above[0]) == (0.0, 0.0)
