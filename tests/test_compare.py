"""`/compare`, `/categories`, the runs page and the jump box on a hand-built DB of three runs of two models, against
brute force."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures import Page, make_settings
from scipy import stats

from app.main import create_app
from unitscope import claim_rules, schema

DOG, BIRD, OTHER = "n02085620", "n01530575", "n01440764"
WNIDS = [DOG, DOG, DOG, BIRD, BIRD, OTHER, OTHER, OTHER]  # image ids 0-7
# run -> (model, {layer: units}, categories); layers in depth order.
RUNS = {
    1: ("net-x", {"l0": 5, "l1": 3, "l2": 4}, {"dog": [DOG], "bird": [BIRD]}),
    2: ("net-x", {"l0": 5, "l1": 3, "l2": 4}, {"dog": [DOG], "bird": [BIRD]}),
    3: ("net-y", {"c1": 3, "c2": 2}, {"dog": [DOG]}),
}
K, THRESHOLD = 3, 0.6
SCORES = f"k={K}&threshold={THRESHOLD}"


def responses(run: int, layer: str, units: int) -> np.ndarray:
    """(images, units, (mean, max, min)) in quarters, exact in float32; ties on purpose."""
    rng = np.random.default_rng([run, sum(map(ord, layer))])
    values = rng.integers(-8, 9, size=(len(WNIDS), units, 3)).astype(np.float64) / 4
    if run == 1:
        values[:3, 0, 1] += 3  # unit 0 of each layer: dogs high on max
    if run == 2 and layer == "l0":
        values[:, 4, 1] = 1.0  # a constant max: SI undefined, left out of the pairs
    return values


def build(path: Path) -> Path:
    con = duckdb.connect(str(path))
    for ddl in schema.DDL:
        con.execute(ddl)
    con.execute(f"INSERT INTO {schema.META} VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)])
    for run, (model, layers, categories) in RUNS.items():
        con.execute(
            f"INSERT INTO {schema.RUNS} VALUES (?, ?, ?, ?, 'w', 'ff', '{{}}', '/images', 8, 'cpu', 'float32', ?, ?)",
            [run, schema.RUN_COMPLETE, f"h{run}", model, datetime(2024, 1, run), datetime(2024, 1, run, 1)],
        )
        for image_id, wnid in enumerate(WNIDS):
            con.execute(f"INSERT INTO {schema.IMAGES} VALUES (?, ?, ?, ?, NULL, ?, 8, 8, 'RGB')",
                        [run, image_id, f"{wnid}/{image_id}.JPEG", wnid, wnid])
        for name, wnids in categories.items():
            for wnid in wnids:
                con.execute(f"INSERT INTO {schema.CATEGORIES} VALUES (?, ?, ?)", [run, name, wnid])
        for position, (layer, units) in enumerate(layers.items()):
            con.execute(f"INSERT INTO {schema.LAYERS_TABLE} VALUES (?, ?, ?, ?, ?)",
                        [run, layer, position, units, layer])
            values = responses(run, layer, units)
            for image_id in range(len(WNIDS)):
                for unit in range(units):
                    con.execute(f"INSERT INTO {schema.RESPONSES} VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [run, layer, unit, image_id, *values[image_id, unit]])
    con.close()
    return path


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("multi")
    with TestClient(create_app(make_settings(build(root / "multi.duckdb"), root))) as c:
        yield c


# ---------------------------------------------------------------- brute force


def si(a: np.ndarray, cat: np.ndarray) -> float | None:
    if a.max() == a.min():
        return None
    norm = (a - a.min()) / (a.max() - a.min())
    return float(norm[cat].mean() / (norm[cat].mean() + norm[~cat].mean()))


def expected_layer(run: int, layer: str, category: str) -> dict[str, object]:
    """Selective units and in_bottom >= base rate among them and the rest, from the raw responses."""
    cat = np.array([w in RUNS[run][2][category] for w in WNIDS])
    rate = K * cat.sum() / len(WNIDS)
    values = responses(run, layer, RUNS[run][1][layer])
    selective = bottom_sel = bottom_rest = 0
    for unit in range(values.shape[1]):
        value = si(values[:, unit, 1], cat)
        smallest = sorted(range(len(WNIDS)), key=lambda i: (values[i, unit, 2], i))[:K]  # min, ties to smaller id
        low = cat[smallest].sum() >= rate
        if value is not None and value >= THRESHOLD:
            selective += 1
            bottom_sel += low
        else:
            bottom_rest += low
    units = values.shape[1]
    return {"units": units, "selective": selective, "selective_bottom": bottom_sel, "rest_bottom": bottom_rest,
            "share_selective": selective / units,
            "share_selective_bottom": bottom_sel / selective if selective else None,
            "share_rest_bottom": bottom_rest / (units - selective) if units > selective else None}


def shares(side: dict) -> list[dict]:
    keys = ("units", "selective", "selective_bottom", "rest_bottom", "share_selective", "share_selective_bottom",
            "share_rest_bottom")
    return [{k: layer[k] for k in keys} for layer in side["layers"]]


# ---------------------------------------------------------------- compare


def test_curves_of_two_models_on_one_depth_axis(multi):
    body = multi.get(f"/api/compare?a=1&b=3&{SCORES}").json()
    assert (body["a"]["run"]["model"], body["b"]["run"]["model"]) == ("net-x", "net-y")
    assert [s["depth"] for s in body["a"]["layers"]] == [0.0, 0.5, 1.0]  # three layers: i / 2
    assert [s["depth"] for s in body["b"]["layers"]] == [0.0, 1.0]
    for side, run in ((body["a"], 1), (body["b"], 3)):
        assert [s["layer"] for s in side["layers"]] == list(RUNS[run][1])
        assert shares(side) == [pytest.approx(expected_layer(run, layer, "dog")) for layer in RUNS[run][1]]
        assert side["base_rate"] == pytest.approx(K * 3 / 8) and side["n_category"] == 3
    assert (body["same_model"], body["common_layers"], body["scatter"]) == (False, [], None)
    # Something in the example is worth the check: selective units with and without a low bottom.
    assert any(s["selective"] for s in body["a"]["layers"]) and any(s["rest_bottom"] for s in body["a"]["layers"])


def test_same_model_pairs_each_units_si_with_spearman(multi):
    body = multi.get(f"/api/compare?a=1&b=2&layer=l0&{SCORES}").json()
    assert body["same_model"] and body["common_layers"] == ["l0", "l1", "l2"]
    cat = np.array([w == DOG for w in WNIDS])
    by_run = {run: [si(responses(run, "l0", 5)[:, u, 1], cat) for u in range(5)] for run in (1, 2)}
    pairs = body["scatter"]
    assert (pairs["layer"], pairs["units"]) == ("l0", [0, 1, 2, 3, 4])
    assert pairs["si_a"] == [pytest.approx(v) for v in by_run[1]]
    assert pairs["si_b"][:4] == [pytest.approx(v) for v in by_run[2][:4]] and pairs["si_b"][4] is None
    # Spearman over the four units with an SI in both runs.
    assert pairs["pairs"] == 4
    assert pairs["spearman"] == pytest.approx(stats.spearmanr(by_run[1][:4], by_run[2][:4]).statistic)
    assert pairs["pearson"] == pytest.approx(stats.pearsonr(by_run[1][:4], by_run[2][:4]).statistic)
    # Without ?layer=: the middle of the common layers.
    assert multi.get(f"/api/compare?a=1&b=2&{SCORES}").json()["scatter"]["layer"] == "l1"


def test_defaults_and_refusals(multi):
    body = multi.get("/api/compare").json()  # the latest run against the one before it
    assert (body["a"]["run"]["run_id"], body["b"]["run"]["run_id"]) == (3, 2)
    assert [r["run_id"] for r in body["runs"]] == [3, 2, 1]
    for url, detail in (
        ("/api/compare?a=1&b=9", "no complete run 9"),
        ("/api/compare?a=1&b=2&layer=c1", "layer 'c1' is not in both runs; both have l0, l1, l2"),
        ("/api/compare?a=1&b=3&category=bird", "unknown category 'bird'; run 3 has dog"),
        ("/api/compare?a=1&b=3&layer=l0", "runs 1 and 3 ran different models (net-x and net-y): their units do not "
         "pair"),
    ):
        response = multi.get(url)
        assert response.status_code == 404 and detail in response.json()["error"]["detail"], url
    assert multi.get("/api/compare?a=x").status_code == 422


def test_compare_page_links_into_each_run(multi):
    page = Page(multi.get(f"/compare?a=1&b=3&{SCORES}").text)
    assert f"/layers/l0?run=1&k={K}&threshold={THRESHOLD}" in page.by_id("layers-a").hrefs()
    assert f"/layers/c2?run=3&k={K}&threshold={THRESHOLD}" in page.by_id("layers-b").hrefs()
    assert "different models (net-x and net-y)" in page.one("p", cls="note").text
    assert not page.find_all(id="si-pairs")  # units of different models do not pair: no scatter
    url = f"/compare?a=1&b=2&layer=l0&{SCORES}"
    scatter, pairs = Page(multi.get(url).text), multi.get("/api" + url).json()["scatter"]
    assert scatter.by_id("si-pairs").get("data-figure") == "si-pairs-data" and "si-pairs-data" in scatter.figures
    correlation = scatter.by_id("si-correlation")
    assert correlation.text.startswith("l0 · Spearman ")
    assert [b.text for b in correlation.find_all("b")] == [f"{pairs['spearman']:.3f}", f"{pairs['pearson']:.3f}"]


# ---------------------------------------------------------------- categories and runs


def test_categories_lists_every_category_of_the_run(multi):
    body = multi.get(f"/api/categories?run=1&{SCORES}").json()
    assert [c["category"] for c in body["categories"]] == ["bird", "dog"]
    for c in body["categories"]:
        assert c["n_category"] == {"dog": 3, "bird": 2}[c["category"]]
        assert shares(c) == [pytest.approx(expected_layer(1, layer, c["category"])) for layer in RUNS[1][1]]
    page = Page(multi.get(f"/categories?run=1&{SCORES}").text)
    links = page.find_all("a", href=f"/layers/l2?run=1&category=bird&k={K}&threshold={THRESHOLD}")
    assert [a.text for a in links] == ["l2"]


def test_wilson_interval_by_hand_and_against_scipy() -> None:
    from unitscope.stats import wilson_interval

    # 1 of 1 by hand, z = 1.96: centre (1 + z²/2) / (1 + z²) = 0.603272, half-width z·(z/2) / (1 + z²) = 0.396728
    assert wilson_interval(1, 1, z=1.96) == pytest.approx((0.206544, 1.0), abs=1e-6)
    assert wilson_interval(0, 0) is None
    for hits, n in ((0, 1), (3, 7), (40, 41), (512, 1000)):
        want = stats.binomtest(hits, n).proportion_ci(method="wilson")
        assert wilson_interval(hits, n) == pytest.approx((want.low, want.high), abs=1e-12)


def test_categories_chart_has_a_panel_per_category_with_n_and_intervals(multi):
    body = multi.get(f"/api/categories?run=1&{SCORES}").json()
    figure = Page(multi.get(f"/categories?run=1&{SCORES}").text).figures["categories-chart-data"]
    for i, c in enumerate(body["categories"]):
        axis = "" if i == 0 else str(i + 1)
        selective, rest, n_row = [t for t in figure["data"] if t["xaxis"] == f"x{axis}"]
        assert selective["x"] == n_row["x"] == [s["layer"] for s in c["layers"]]
        assert n_row["text"] == [str(s["selective"]) for s in c["layers"]]  # n under each layer
        for trace, share, ci, hits, whole in ((selective, "share_selective_bottom", "ci_selective_bottom",
                                               "selective_bottom", "selective"),
                                              (rest, "share_rest_bottom", "ci_rest_bottom", "rest_bottom", None)):
            for s, y, up, down in zip(c["layers"], trace["y"], trace["error_y"]["array"],
                                      trace["error_y"]["arrayminus"]):
                n = s["selective"] if whole else s["units"] - s["selective"]
                assert y == s[share]
                if n == 0:
                    assert y is None and s[ci] is None and up is None
                    continue
                want = stats.binomtest(s[hits], n).proportion_ci(method="wilson")
                assert s[ci] == pytest.approx([want.low, want.high])
                assert (y - down, y + up) == pytest.approx((want.low, want.high))
        assert c["category"] in " ".join(a["text"] for a in figure["layout"]["annotations"])


def test_runs_page_lists_each_run_with_its_model_and_links(multi):
    body = multi.get("/api/").json()
    assert [(r["run_id"], r["model"]) for r in body["runs"]] == [(3, "net-y"), (2, "net-x"), (1, "net-x")]
    page = Page(multi.get("/").text)
    hrefs = set(page.hrefs())
    for run in RUNS:
        assert {f"/?run={run}", f"/layers?run={run}", f"/categories?run={run}"} <= hrefs
    assert {"/compare?a=3&b=2", "/compare?a=3&b=1"} <= hrefs
    rows = [tr.find_all("td") for tr in page.find_all("table")[0].one("tbody").find_all("tr")]
    assert [(td[0].one("a").get("href"), td[0].text, td[1].text) for td in rows] == [
        ("/?run=3", "3", "net-y"), ("/?run=2", "2", "net-x"), ("/?run=1", "1", "net-x")]


@pytest.mark.parametrize("url", ["/?run=1", "/layers?run=1", "/layers/l1?run=1", "/layers/l1/units/0?run=1",
                                 "/categories?run=1", "/skipped?run=1"])
def test_a_page_of_one_run_keeps_it_in_every_link(multi, url):
    for href in [str(e.get("href")) for e in Page(multi.get(url).text).find_all(href=True)]:  # <a> and <link>
        parts = urlsplit(href)
        if parts.path.startswith("/static/") or parts.path in ("/docs",):
            continue
        query = parse_qs(parts.query)
        key = "a" if parts.path in ("/compare", "/api/compare") else "run"
        if url == "/?run=1":  # the runs page links every run, each by its id
            assert key in query, href
        else:
            assert query.get(key) == ["1"], (url, href)


def test_categories_and_compare_say_how_k_was_chosen_and_warn_when_top_and_bottom_overlap(multi):
    """The layer pages' k reason and overlap warning, on the two pages that score whole runs: 8 images, so k = 5 makes
    every unit's top and bottom 5 share at least 2 images, and k = 9 ranks all 8 on both sides."""
    for k, said in ((3, None), (5, "share at least 2 images"), (9, "are all of them")):
        categories = multi.get(f"/api/categories?run=1&k={k}").json()
        compare = multi.get(f"/api/compare?a=1&b=3&k={k}").json()
        assert categories["k_source"] == "given" and categories["k_reason"] == f"k = {k}, as given"
        assert [compare[side]["k_reason"] for side in "ab"] == [f"run 1: k = {k}, as given", f"run 3: k = {k}, as given"]
        for warnings in (categories["warnings"], compare["a"]["warnings"], compare["b"]["warnings"]):
            assert (warnings == []) if said is None else (len(warnings) == 1 and said in warnings[0]), (k, warnings)
        page = Page(multi.get(f"/categories?run=1&k={k}").text)
        assert [p.text for p in page.find_all("p", cls="warning")] == [f"⚠ {w}" for w in categories["warnings"]]
        page = Page(multi.get(f"/compare?a=1&b=3&k={k}").text)
        assert len(page.find_all("p", cls="warning")) == (0 if said is None else 2)
    default = multi.get("/api/categories?run=1").json()
    assert default["k_source"] == "default" and default["k_reason"] == claim_rules.default_k(8)[1]


def test_categories_keeps_k_within_the_stored_ranks(multi):
    response = multi.get(f"/api/categories?k={schema.RANKED_K + 1}")
    assert response.status_code == 422 and "less than or equal to 1000" in response.text


def test_compare_opens_on_the_claims_layer_and_says_what_to_run_with_one_run(multi, client: TestClient) -> None:
    from unitscope import claim_rules

    body = multi.get("/api/compare?a=2&b=1").json()  # the same model: its units are paired on one layer
    assert body["scatter"]["layer"] == claim_rules.default_layer(body["common_layers"])[0]
    page = multi.get("/compare").text
    assert 'name="k" min="1"' in page and 'value="None"' not in page
    alone = client.get("/compare").text  # the hand DB has one complete run
    assert "compared with itself" in alone and "--weights random" in alone
    assert "compared with itself" not in page


# ---------------------------------------------------------------- the header's jump box across runs


@pytest.mark.parametrize(("query", "target"), [
    # The latest run (3, net-y) has no l1: the latest run that has it (2) is the one opened, and named in the link.
    ("q=l1+2", "/layers/l1/units/2?run=2"),
    # From a page of run 1, its own unit.
    ("q=l1+2&run=1", "/layers/l1/units/2?run=1"),
    # A layer of the latest run needs no run in the link; from a run without it, the run that has it.
    ("q=c1+1", "/layers/c1/units/1"),
    ("q=c1+1&run=1", "/layers/c1/units/1?run=3"),
    # l1 has units 0-2: unit 3 is still its unit page (a 404 that names the layer's units); any case finds l1.
    ("q=l1+3&run=1", "/layers/l1/units/3?run=1"),
    ("q=L1+2&run=1", "/layers/l1/units/2?run=1"),
    ("q=nope+1", "/units?q=nope+1"),
])
def test_the_jump_box_opens_the_unit_in_the_pages_run_or_the_latest_that_has_the_layer(multi, query, target):
    r = multi.get(f"/jump?{query}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == target


def test_the_jump_box_refuses_an_unknown_run_and_carries_the_pages_run(multi):
    r = multi.get("/jump?q=l1+2&run=9", follow_redirects=False)
    assert r.status_code == 404 and "no complete run 9" in r.text
    assert multi.get("/jump?q=l1+2&run=x", follow_redirects=False).status_code == 422
    # The header's form sends the page's run as a hidden field, and nothing for a page of the latest run.
    form = Page(multi.get("/layers/l1?run=1").text).one("form", cls="jump")
    assert [(i.get("name"), i.get("type"), i.get("value")) for i in form.find_all("input")] == [
        ("q", "search", None), ("run", "hidden", "1")]
    assert [i.get("name") for i in Page(multi.get("/layers/c1").text).one("form", cls="jump").find_all("input")] == ["q"]
