"""Every page and its JSON twin: values on the hand-made DB against brute force over its raw responses,
what the pages show against their twins, and sanity on a real-worker DB."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from urllib.parse import urlencode

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures import (
    CATEGORIES,
    HAND_K,
    HAND_PAGES,
    IMAGES,
    LAYERS,
    PRECOMPUTED,
    Page,
    expected_base_rate,
    expected_scores,
    expected_si,
    in_category,
    make_settings,
    ranked,
)
from PIL import Image

from app.main import create_app
from app.params import ScoreParams, UnitParams
from unitscope import schema
from worker.models import GOOGLENET_LAYERS


def twin(url: str) -> str:
    return "/api" + url


def k_of(p: ScoreParams) -> int:
    """The k a view of the hand-made DB uses: the given one, else the default for its six images."""
    return HAND_K if p.k is None else p.k


def scores(body: dict) -> list[tuple[int, float | None, int, int]]:
    return [(u["unit"], u["si"], u["in_top"], u["in_bottom"]) for u in body["units"]]


def approx_rows(rows: list[tuple]) -> list[tuple]:
    return [tuple(pytest.approx(v) if isinstance(v, float) else v for v in r) for r in rows]


# ---------------------------------------------------------------------------------------------
# Exact values on the hand-made DB, against brute force over the raw responses it holds


def test_the_brute_force_agrees_with_the_hand_worked_cases() -> None:
    # The oracle itself, on the cases MIXED4C was built for: max 10 8 6 | 0 2 4 -> A_N 1 .8 .6 | 0 .2 .4 -> .8;
    # a constant max -> no SI; every dog at the minimum -> 0; k=2: top (0, 1) both dogs, bottom (3, 4) none.
    assert expected_scores("mixed4c", k=2) == [(0, pytest.approx(0.8), 2, 0), (1, None, 2, 2), (2, 0.0, 0, 2)]
    assert expected_base_rate("dog", 2) == 1.0 and expected_base_rate("dog", 1000) == 3.0


SCORE_PARAMS = [
    ("mixed4c", {}),
    ("mixed4c", {"k": 2}),
    ("mixed4c", {"k": 1}),
    ("mixed4c", {"k": 3, "pos_stat": "mean", "neg_stat": "max"}),
    ("mixed4c", {"k": 2, "si_stat": "mean"}),
    ("mixed4c", {"k": 2, "si_stat": "min", "neg_stat": "mean"}),
    ("mixed4c", {"k": 2, "category": "fish"}),
    ("mixed4c", {"k": 4, "category": "fish", "pos_stat": "min", "si_stat": "mean"}),
    ("mixed4c", {"k": schema.RANKED_K + 1}),
    ("conv1", {}),
    ("conv1", {"k": 2}),
    ("conv1", {"k": 3, "category": "fish", "si_stat": "mean", "neg_stat": "max"}),
]


@pytest.mark.parametrize(("layer", "params"), SCORE_PARAMS)
def test_layer_scores_match_brute_force(client: TestClient, layer: str, params: dict) -> None:
    body = client.get(f"/api/layers/{layer}?{urlencode(params)}").json()
    p = ScoreParams(**params)
    k = k_of(p)
    want = expected_scores(layer, p.category, k, p.pos_stat, p.neg_stat, p.si_stat)
    assert scores(body) == approx_rows(want)
    assert [u["selective"] for u in body["units"]] == [si is not None and si >= p.threshold for _, si, _, _ in want]
    assert body["selective"] == sum(u["selective"] for u in body["units"])
    assert (body["layer"], body["k"], body["n_images"], body["n_category"]) == (
        layer, k, len(IMAGES), int(in_category(p.category).sum()))
    assert body["k_source"] == ("default" if p.k is None else "given")
    assert body["base_rate"] == pytest.approx(expected_base_rate(p.category, k))
    # Stored SI for one (layer, category, stat) and stored ranks for mixed4c, which reach all 6 images, so any k
    # (k > 6 counts all of them) is a lookup; the rest on demand.
    stored = (layer, p.category, p.si_stat) == PRECOMPUTED
    assert body["source"] == ("precomputed" if stored else "computed")


def test_threshold_only_colours_the_units(client: TestClient) -> None:
    si0 = expected_si("mixed4c", 0, "dog", "max")
    assert si0 is not None
    assert client.get(f"/api/layers/mixed4c?threshold={si0 - 0.001:.4f}").json()["selective"] == 1
    assert client.get(f"/api/layers/mixed4c?threshold={si0 + 0.001:.4f}").json()["selective"] == 0


@pytest.mark.parametrize("params", [{}, {"k": 2}, {"k": 2, "category": "fish", "si_stat": "mean", "threshold": 0.5}])
def test_api_layers_counts_selective_units_per_layer(client: TestClient, params: dict) -> None:
    body = client.get(f"/api/layers?{urlencode(params)}").json()
    assert isinstance(body, list)
    p = ScoreParams(**params)
    base = expected_base_rate(p.category, k_of(p))
    want = []
    for layer, units in LAYERS.items():
        rows = expected_scores(layer, p.category, k_of(p), p.pos_stat, p.neg_stat, p.si_stat)
        selective = [r for r in rows if r[1] is not None and r[1] >= p.threshold]
        want.append((layer, len(units), len(selective), sum(1 for r in selective if r[3] >= base)))
    assert [(x["name"], x["units"], x["selective"], x["selective_bottom"]) for x in body] == want
    assert all(x["base_rate"] == pytest.approx(base) and x["categories"] == list(CATEGORIES) for x in body)


def _histogram(layer: str, unit: int, stat: str, category: str) -> tuple[list[float], list[int], list[int]]:
    """40 equal bins over the unit's range (one when it never varies), the maximum in the last."""
    a = np.array(LAYERS[layer][unit], dtype=np.float32)[:, ("mean", "max", "min").index(stat)].astype(np.float64)
    lo, hi = a.min(), a.max()
    bins = 40 if hi > lo else 1
    width = (hi - lo) / bins if hi > lo else 1.0
    start = lo if hi > lo else lo - 0.5
    index = np.minimum(np.floor((a - lo) / width), bins - 1).astype(int)
    cat = in_category(category)
    return ([start + i * width for i in range(bins + 1)],
            np.bincount(index[cat], minlength=bins).tolist(), np.bincount(index[~cat], minlength=bins).tolist())


@pytest.mark.parametrize(("layer", "unit", "params"), [
    ("mixed4c", 0, {"n": 2, "k": 2}),
    ("mixed4c", 1, {"n": 3}),
    ("mixed4c", 2, {}),
    ("mixed4c", 0, {"n": 4, "category": "fish", "pos_stat": "mean", "neg_stat": "max", "near_stat": "min",
                    "si_stat": "mean"}),
    ("conv1", 1, {"n": 5, "k": 2}),
])
def test_unit_rankings_scores_and_histogram_match_brute_force(
    client: TestClient, layer: str, unit: int, params: dict
) -> None:
    body = client.get(f"/api/layers/{layer}/units/{unit}?{urlencode(params)}").json()
    p = UnitParams(**params)
    assert (body["layer"], body["unit"], body["units"], body["n"]) == (layer, unit, len(LAYERS[layer]), p.n)
    si, in_top, in_bottom = expected_scores(layer, p.category, k_of(p), p.pos_stat, p.neg_stat, p.si_stat)[unit][1:]
    assert (body["si"], body["in_top"], body["in_bottom"]) == (pytest.approx(si), in_top, in_bottom)
    cat = in_category(p.category)
    for kind, stat, order in (("positive", p.pos_stat, "top"), ("negative", p.neg_stat, "bottom"),
                              ("near_zero", p.near_stat, "near_zero")):
        ids = ranked(layer, unit, stat, order)[:p.n]  # ties by image id
        column = ("mean", "max", "min").index(stat)
        assert [(e["image"], e["value"], e["is_category"]) for e in body[kind]] == [
            (i, pytest.approx(LAYERS[layer][unit][i][column], rel=1e-6), bool(cat[i])) for i in ids], kind
        assert [(e["wnid"], e["class_name"]) for e in body[kind]] == [(IMAGES[i][2], IMAGES[i][4]) for i in ids]
    edges, in_cat, rest = _histogram(layer, unit, p.si_stat, p.category)
    h = body["histogram"]
    assert (h["stat"], h["category"], h["rest"]) == (p.si_stat, in_cat, rest)
    assert h["edges"] == pytest.approx(edges)
    # prev/next follow the layer's units by SI, largest first (undefined last, ties by number)
    by_si = [u for u, *_ in sorted(expected_scores(layer, p.category, k_of(p), p.pos_stat, p.neg_stat, p.si_stat),
                                   key=lambda r: (r[1] is None, -(r[1] or 0.0), r[0]))]
    at = by_si.index(unit)
    assert (body["order"], body["prev_unit"], body["next_unit"]) == (
        "si", by_si[at - 1] if at else None, by_si[at + 1] if at + 1 < len(by_si) else None)
    by_number = client.get(f"/api/layers/{layer}/units/{unit}?{urlencode({**params, 'order': 'unit'})}").json()
    assert (by_number["prev_unit"], by_number["next_unit"]) == (
        unit - 1 if unit else None, unit + 1 if unit + 1 < len(LAYERS[layer]) else None)


def test_index_shows_complete_runs_only(client: TestClient) -> None:
    body = client.get("/api/").json()
    assert [r["run_id"] for r in body["runs"]] == [1]  # run 2 is still 'running'
    run = body["run"]
    assert (run["images"], run["skipped"], run["model"]) == (len(IMAGES), 1, "bvlc-googlenet")
    assert {c["name"]: c["images"] for c in run["categories"]} == {
        name: int(in_category(name).sum()) for name in CATEGORIES}
    assert [(x["name"], x["units"]) for x in body["layers"]] == [(name, len(u)) for name, u in LAYERS.items()]
    assert client.get("/api/?run=2").status_code == 404
    assert client.get("/api/layers/mixed4c?run=2").status_code == 404
    assert client.get("/api/layers/mixed4c?run=1").status_code == 200


def test_index_page_shows_the_runs_and_layers_of_its_twin(client: TestClient) -> None:
    page = Page(client.get("/").text)
    body = client.get("/api/").json()
    assert [(int(r[0]), r[1], int(r[4].replace(",", "")), int(r[5])) for r in page.rows["table0"][1:]] == [
        (x["run_id"], x["model"], x["images"], x["skipped"]) for x in body["runs"]]
    layers = page.rows["table1"][1:-1]  # between the header and the total
    assert [(r[0], int(r[1]), r[2]) for r in layers] == [(x["name"], x["units"], x["module"]) for x in body["layers"]]


def test_skipped_lists_files_and_reasons(client: TestClient) -> None:
    body = client.get("/api/skipped").json()
    assert body == {"run_id": 1, "count": 1,
                    "files": [{"file_id": 6, "path": "n01440764/broken.JPEG", "reason": "truncated JPEG"}]}
    page = Page(client.get("/skipped").text)
    assert ["6", "n01440764/broken.JPEG", "truncated JPEG"] in page.rows["table0"]


def _from_csv(cell: str, like: object) -> object:
    """A CSV cell read back as its JSON value's type: the CSV writes a null as an empty cell and a flag as 0/1."""
    if cell == "":
        return None
    if isinstance(like, bool):
        return bool(int(cell))
    return float(cell) if isinstance(like, int | float) else cell


def test_csv_download_matches_the_json(client: TestClient) -> None:
    r = client.get("/api/layers/mixed4c.csv?k=2")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    got = [(int(x["unit"]), float(x["si"]) if x["si"] else None, int(x["in_top"]), int(x["in_bottom"])) for x in rows]
    body = client.get("/api/layers/mixed4c?k=2").json()
    assert got == scores(body) == approx_rows(expected_scores("mixed4c", k=2))  # repr(): every digit kept
    assert [x["selective"] for x in rows] == [str(int(u["selective"])) for u in body["units"]]


@pytest.mark.parametrize("url", ["/api/layers/mixed4c?k=2&threshold=0.4", "/api/layers/conv1?category=fish"])
def test_the_layer_csv_has_every_column_of_the_jsons_unit_rows(client: TestClient, url: str) -> None:
    """One column per field of a JSON unit row, in its order, with the same values: the CSV drops nothing."""
    units = client.get(url).json()["units"]
    path, query = url.split("?")
    reader = csv.reader(io.StringIO(client.get(f"{path}.csv?{query}").text))
    header, *rows = list(reader)
    assert header == list(units[0])
    # What the issue found missing: split-half SI, the negative claim's evidence, the pre-ReLU tuning shape.
    assert {"si_half_a", "si_half_b", "bottom_only_share", "q_bottom_only", "sparseness_pre", "label"} <= set(header)
    assert len(rows) == len(units)
    for row, unit in zip(rows, units, strict=True):
        assert {k: _from_csv(cell, unit[k]) for k, cell in zip(header, row, strict=True)} == unit


@pytest.mark.parametrize("url", HAND_PAGES)
def test_every_page_has_a_json_twin(client: TestClient, url: str) -> None:
    page = client.get(url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    api = twin(url)
    assert page.headers["link"] == f'<{api}>; rel="alternate"; type="application/json"'
    assert api in Page(page.text).hrefs()  # a visible link too
    data = client.get(api)
    assert data.status_code == 200 and data.headers["content-type"] == "application/json"


def test_layer_page_shows_the_json_data(client: TestClient) -> None:
    url = "/layers/mixed4c?k=2"
    page = Page(client.get(url).text)
    body = client.get(twin(url)).json()
    table = page.rows["units-table"][1:]
    # The table opens by SI, largest first, an undefined SI last (the JSON keeps unit order).
    by_si = sorted(body["units"], key=lambda u: (u["si"] is None, -(u["si"] or 0.0), u["unit"]))
    assert [u["unit"] for u in by_si] == [0, 2, 1]
    assert [(int(r[0]), r[1], int(r[4]), int(r[7])) for r in table] == [  # unit, SI, AUROC, d', in_top, p, q, in_bottom
        (u["unit"], "n/a" if u["si"] is None else f"{u['si']:.3f}", u["in_top"], u["in_bottom"]) for u in by_si
    ]
    fig = page.figures["scatter-data"]
    points = [(x, y, c[0]) for t in fig["data"] if t["type"] == "scatter"
              for x, y, c in zip(t["x"], t["y"], t["customdata"])]
    assert sorted(points, key=lambda p: p[2]) == [(u["in_top"], u["in_bottom"], u["unit"]) for u in body["units"]]
    red = next(t for t in fig["data"] if t["marker"]["color"] == "#d62728")
    selective = [u["unit"] for u in body["units"] if u["selective"]]
    assert selective and [c[0] for c in red["customdata"]] == selective
    # Clicking a point opens its unit, keeping the view's parameters.
    assert [c[2] for c in red["customdata"]] == [f"/layers/mixed4c/units/{u}?k=2" for u in selective]
    base = body["base_rate"]
    lines = {(s["x0"], s["x1"], s["y0"], s["y1"]) for s in fig["layout"]["shapes"]}
    assert lines == {(base, base, 0, 1), (0, 1, base, base)}  # dashed base-rate lines
    assert all(s["line"]["dash"] == "dash" for s in fig["layout"]["shapes"])
    assert "/api/layers/mixed4c.csv?k=2" in page.hrefs()


def test_unit_page_shows_images_and_navigation(client: TestClient) -> None:
    url = "/layers/mixed4c/units/1?n=2&k=2"
    page = Page(client.get(url).text)
    body = client.get(twin(url)).json()
    thumbs = [e["thumbnail"] for kind in ("positive", "near_zero", "negative") for e in body[kind]]
    assert [img["src"] for img in page.images] == thumbs
    hrefs = page.hrefs()
    # By SI (0.8, 0.0, undefined): unit 1 comes last, after unit 2; "by number" keeps the view's parameters.
    assert (body["prev_unit"], body["next_unit"]) == (2, None)
    assert {"/layers/mixed4c/units/2?k=2&n=2", "/layers/mixed4c/units/1?k=2&n=2&order=unit",
            "/layers/mixed4c?k=2"} <= set(hrefs)
    by_number = Page(client.get(url + "&order=unit").text).hrefs()
    assert {"/layers/mixed4c/units/0?k=2&n=2&order=unit", "/layers/mixed4c/units/2?k=2&n=2&order=unit"} <= set(by_number)
    assert all(e["url"] in hrefs for e in body["positive"])  # each image links to the full file
    hist = page.figures["histogram-data"]
    # Both sides: the positive row's stat (max), then the negative row's (min), each category then rest.
    assert [h["stat"] for h in body["sides"]] == ["max", "min"] and body["sides"][0] == body["histogram"]
    assert [t["customdata"] for t in hist["data"]] == [
        counts for h in body["sides"] for counts in (h["category"], h["rest"])]
    assert [t["xaxis"] for t in hist["data"]] == ["x", "x", "x2", "x2"]


def test_layers_page_table_and_chart(client: TestClient) -> None:
    page = Page(client.get("/layers?k=2").text)
    body = client.get("/api/layers?k=2").json()
    table = page.rows["layers-table"][2:]  # below the two header rows
    assert [(r[0], int(r[1]), int(r[2]), int(r[4])) for r in table] == [
        (x["name"], x["units"], x["selective"], x["selective_bottom"]) for x in body]
    chart = page.figures["layers-chart-data"]["data"]
    assert chart[0]["x"] == ["conv1", "mixed4c"] and chart[0]["y"] == [x["selective"] for x in body]


def test_images_full_and_thumbnail_with_cache_headers(client: TestClient, hand_ro: dict[str, Path]) -> None:
    full = client.get("/images/0")
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    assert full.content == (hand_ro["images"] / IMAGES[0][1]).read_bytes()
    assert "max-age" in full.headers["cache-control"] and full.headers["etag"]
    assert client.get("/images/0", headers={"If-None-Match": full.headers["etag"]}).status_code == 304

    thumbs = client.app.state.settings.thumbnail_dir  # type: ignore[attr-defined]
    before = set(thumbs.rglob("*.jpg"))
    thumb = client.get("/images/1?size=32")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(thumb.content))
    assert img.size == (64, 48)  # made at the smallest fixed size, 64, which the 64 x 48 file fits: never enlarged
    cached = set(thumbs.rglob("*.jpg")) - before
    assert len(cached) == 1 and cached.pop().read_bytes() == thumb.content  # made once, kept on disk
    again = client.get("/images/1?size=32")
    assert again.content == thumb.content and again.headers["etag"] == thumb.headers["etag"]
    assert len(set(thumbs.rglob("*.jpg")) - before) == 1
    assert client.get("/images/1?size=32", headers={"If-None-Match": thumb.headers["etag"]}).status_code == 304


def test_openapi_documents_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {"/api/", "/api/layers", "/api/layers/{layer}", "/api/layers/{layer}/units/{unit}", "/api/skipped",
            "/api/layers/{layer}.csv", "/images/{image_id}", "/healthz"} <= paths
    for path in ("/api/", "/api/layers", "/api/layers/{layer}", "/api/layers/{layer}/units/{unit}"):
        ok = spec["paths"][path]["get"]["responses"]
        assert "$ref" in json.dumps(ok["200"]) or "items" in json.dumps(ok["200"])
        assert "ErrorResponse" in json.dumps(ok["404"]) and "ErrorResponse" in json.dumps(ok["422"])
    assert client.get("/docs").status_code == 200


# ---------------------------------------------------------------------------------------------
# The same pages on a DB written by the real worker


def test_real_worker_db_pages_and_twins(real_client: TestClient) -> None:
    layers = real_client.get("/api/layers").json()
    assert [(x["name"], x["units"]) for x in layers] == list(GOOGLENET_LAYERS.items())
    body = real_client.get("/api/layers/mixed4c?category=dog&k=20&pos_stat=max&neg_stat=min&si_stat=max").json()
    assert len(body["units"]) == 512 and body["k"] == 20
    n, dogs = body["n_images"], body["n_category"]
    assert 0 < dogs < n and body["base_rate"] == pytest.approx(20 * dogs / n)
    for u in body["units"]:
        assert 0 <= u["in_top"] <= 20 and 0 <= u["in_bottom"] <= 20
        assert u["si"] is None or 0.0 <= u["si"] <= 1.0
    default = real_client.get("/api/layers/mixed4c").json()
    assert default["source"] == "precomputed"
    # A small run: k is a sixth of its images, so top and bottom stay apart; the null and AUROC come along.
    assert (default["k"], default["k_source"], default["warnings"]) == (n // 6, "default", [])
    assert default["null"]["permutations"] == 1000 and len(default["null"]["stats"]) == 3
    assert all(u["auroc"] is None or 0.0 <= u["auroc"] <= 1.0 for u in default["units"])
    # The units whose in_top beats chance after BH are marked in the table, and there are some.
    table = {int(r[0]): r for r in Page(real_client.get("/layers/mixed4c?k=20").text).rows["units-table"][1:]}
    significant = [u["unit"] for u in body["units"] if u["significant_top"]]
    assert significant and sorted(u for u, r in table.items() if r[6].endswith("✱")) == significant
    unit = real_client.get("/api/layers/mixed4c/units/5?n=8&k=20").json()
    assert (unit["si"], unit["in_top"], unit["in_bottom"]) == (
        body["units"][5]["si"], body["units"][5]["in_top"], body["units"][5]["in_bottom"])
    pos, neg = [e["value"] for e in unit["positive"]], [e["value"] for e in unit["negative"]]
    assert len(pos) == 8 and pos == sorted(pos, reverse=True) and neg == sorted(neg)
    assert sum(unit["histogram"]["category"]) == dogs and sum(unit["histogram"]["rest"]) == n - dogs
    for url in ("/", "/layers", "/layers/mixed4c", "/layers/mixed4c/units/5", "/layers/conv1/units/63", "/skipped"):
        page = real_client.get(url)
        assert page.status_code == 200, url
        assert real_client.get(twin(url)).status_code == 200, url
    thumb = real_client.get(unit["positive"][0]["thumbnail"])
    assert thumb.status_code == 200 and max(Image.open(io.BytesIO(thumb.content)).size) == 160


def test_layer_table_escapes_labels_and_links(hand: dict[str, Path]) -> None:
    # The unit table's rows are rendered without autoescape (a cold layer page's cost); the label and the link still
    # escape, so a label's markup shows as text and a link keeps every parameter.
    label = '<b class="x">dog & "cat"</b>'
    with duckdb.connect(str(hand["db"])) as con:
        con.execute("DELETE FROM unit_labels WHERE layer = 'mixed4c' AND unit = 0")
        con.execute("INSERT INTO unit_labels VALUES (1, 'mixed4c', 0, ?)", [label])
    with TestClient(create_app(make_settings(hand["db"], hand["root"]))) as client:
        url = "/layers/mixed4c?k=2&threshold=0.4"
        page = Page(client.get(url).text)
        row = next(r for r in page.rows["units-table"][1:] if r[0] == "0")
        assert row[-1] == label
        assert not page.find_all("b", **{"class": "x"})
        assert "/layers/mixed4c/units/0?k=2&threshold=0.4" in page.hrefs()
