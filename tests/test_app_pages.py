"""Every page and its JSON twin, with exact values on the hand-made DB and sanity on a real-worker DB."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from test_app_db import (  # noqa: F401  (fixtures)
    EXPECTED_CONV1_K2,
    EXPECTED_K2,
    EXPECTED_K1000,
    IMAGES,
    SI_MEAN_UNIT0,
    client,
    hand_ro,
    real_client,
    real_db,
)
from worker import schema
from worker.models import GOOGLENET_LAYERS

PAGES = [
    "/",
    "/layers",
    "/layers?k=2",
    "/layers/mixed4c",
    "/layers/mixed4c?k=2&si_stat=mean",
    "/layers/conv1?category=fish&threshold=0.5",
    "/layers/mixed4c/units/0",
    "/layers/mixed4c/units/2?k=2&n=3&near_stat=max",
    "/skipped",
]


class Page(HTMLParser):
    """The parts of a page the tests look at: links, images, table cells, embedded figures."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []
        self.images: list[dict[str, str | None]] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.figures: dict[str, dict] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._script: str | None = None
        self._text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a":
            self.links.append(a)
        elif tag == "img":
            self.images.append(a)
        elif tag == "table":
            self._table = a.get("id") or f"table{len(self.rows)}"
            self.rows[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "script" and a.get("type") == "application/json":
            self._script, self._text = a.get("id"), []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.rows[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "script" and self._script:
            self.figures[self._script] = json.loads("".join(self._text))
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._script:
            self._text.append(data)

    def hrefs(self) -> list[str]:
        return [str(a.get("href")) for a in self.links]


def twin(url: str) -> str:
    return "/api" + url


def scores(body: dict) -> list[tuple[int, float | None, int, int]]:
    return [(u["unit"], u["si"], u["in_top"], u["in_bottom"]) for u in body["units"]]


def approx_rows(rows: list[tuple]) -> list[tuple]:
    return [tuple(pytest.approx(v) if isinstance(v, float) else v for v in r) for r in rows]


# ---------------------------------------------------------------------------------------------
# Exact values on the hand-made DB


def test_api_layers_is_a_list_of_name_and_units(client: TestClient) -> None:
    body = client.get("/api/layers").json()
    assert isinstance(body, list)
    assert [(x["name"], x["units"]) for x in body] == [("conv1", 2), ("mixed4c", 3)]
    # k=1000 >= 6 images: base rate 6 x 3/6 = 3; mixed4c unit 0 (SI .8) has in_bottom 3 >= 3.
    m = body[1]
    assert (m["selective"], m["selective_bottom"], m["base_rate"]) == (1, 1, 3.0)
    # k=2: base rate 1; unit 0's bottom 2 holds no dog.
    m = client.get("/api/layers?k=2").json()[1]
    assert (m["selective"], m["selective_bottom"], m["base_rate"]) == (1, 0, 1.0)


def test_layer_scores_match_the_hand_computed_values(client: TestClient) -> None:
    body = client.get("/api/layers/mixed4c?category=dog&k=2&pos_stat=max&neg_stat=min&si_stat=max").json()
    assert (body["layer"], body["k"], body["base_rate"]) == ("mixed4c", 2, 1.0)
    assert scores(body) == approx_rows(EXPECTED_K2)
    assert [u["selective"] for u in body["units"]] == [True, False, False]
    assert body["source"] == "precomputed"  # k <= RANKED_K: from the stored ranks
    # Past RANKED_K the counts come from the responses, and must agree.
    beyond = client.get(f"/api/layers/mixed4c?k={schema.RANKED_K + 1}").json()
    assert beyond["source"] == "computed"
    assert scores(beyond) == scores(client.get("/api/layers/mixed4c").json())  # 6 images: all in both

    default = client.get("/api/layers/mixed4c").json()
    assert scores(default) == approx_rows(EXPECTED_K1000)
    assert (default["source"], default["base_rate"], default["n_images"], default["n_category"]) == (
        "precomputed", 3.0, 6, 3)

    assert scores(client.get("/api/layers/conv1?k=2").json()) == approx_rows(EXPECTED_CONV1_K2)
    mean = client.get("/api/layers/mixed4c?k=2&si_stat=mean").json()
    assert mean["units"][0]["si"] == pytest.approx(SI_MEAN_UNIT0)
    # fish = images 3-5: unit 0 A_N(max) .2 vs .8 -> SI .2; top 2 (0, 1) no fish, bottom 2 (3, 4) two.
    fish = client.get("/api/layers/mixed4c?k=2&category=fish").json()
    assert scores(fish)[0] == approx_rows([(0, 0.2, 0, 2)])[0]
    assert client.get("/api/layers/mixed4c?threshold=0.8").json()["selective"] == 1
    assert client.get("/api/layers/mixed4c?threshold=0.81").json()["selective"] == 0


def test_unit_rankings_scores_and_histogram(client: TestClient) -> None:
    body = client.get("/api/layers/mixed4c/units/0?category=dog&n=2&k=2").json()
    assert (body["layer"], body["unit"], body["si"], body["in_top"], body["in_bottom"]) == ("mixed4c", 0, 0.8, 2, 0)

    def ids(kind: str) -> list[tuple[int, float]]:
        return [(e["image"], e["value"]) for e in body[kind]]

    assert ids("positive") == [(0, 10.0), (1, 8.0)]  # largest max
    assert ids("negative") == [(3, -9.0), (4, -8.0)]  # smallest min
    assert ids("near_zero") == [(2, pytest.approx(0.1)), (4, pytest.approx(0.2))]  # smallest |mean|
    first = body["positive"][0]
    assert {k: first[k] for k in ("image", "wnid", "class_name", "is_category")} == {
        "image": 0, "wnid": IMAGES[0][2], "class_name": "Chihuahua", "is_category": True}
    assert body["negative"][0]["is_category"] is False
    assert (body["prev_unit"], body["next_unit"]) == (None, 1)
    # Histogram of max over [0, 10] in 40 bins: dogs 10, 8, 6 -> bins 39, 32, 24; rest 0, 2, 4 -> 0, 8, 16.
    h = body["histogram"]
    assert h["stat"] == "max" and h["edges"][0] == 0.0 and h["edges"][-1] == 10.0 and len(h["edges"]) == 41
    assert [i for i, c in enumerate(h["category"]) if c] == [24, 32, 39]
    assert [i for i, c in enumerate(h["rest"]) if c] == [0, 8, 16]
    # Ties (unit 1: every max is 5) are broken by image id.
    tied = client.get("/api/layers/mixed4c/units/1?n=3").json()
    assert [e["image"] for e in tied["positive"]] == [0, 1, 2]
    assert tied["si"] is None and tied["histogram"]["category"] == [3] and tied["histogram"]["rest"] == [3]
    last = client.get("/api/layers/mixed4c/units/2").json()
    assert (last["prev_unit"], last["next_unit"], last["n"]) == (1, None, schema.DEFAULT_N)
    assert len(last["positive"]) == 6  # n = 8 > 6 images


def test_index_shows_complete_runs_only(client: TestClient) -> None:
    body = client.get("/api/").json()
    assert [r["run_id"] for r in body["runs"]] == [1]  # run 2 is still 'running'
    run = body["run"]
    assert (run["images"], run["skipped"], run["model"]) == (6, 1, "bvlc-googlenet")
    assert {c["name"]: c["images"] for c in run["categories"]} == {"dog": 3, "fish": 3}
    assert [(x["name"], x["units"]) for x in body["layers"]] == [("conv1", 2), ("mixed4c", 3)]
    assert client.get("/api/?run=2").status_code == 404
    assert client.get("/api/layers/mixed4c?run=2").status_code == 404
    assert client.get("/api/layers/mixed4c?run=1").status_code == 200


def test_skipped_lists_files_and_reasons(client: TestClient) -> None:
    body = client.get("/api/skipped").json()
    assert body == {"run_id": 1, "count": 1,
                    "files": [{"file_id": 6, "path": "n01440764/broken.JPEG", "reason": "truncated JPEG"}]}
    page = Page(client.get("/skipped").text)
    assert ["6", "n01440764/broken.JPEG", "truncated JPEG"] in page.rows["table0"]


def test_csv_download_matches_the_json(client: TestClient) -> None:
    r = client.get("/api/layers/mixed4c.csv?k=2")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    got = [(int(x["unit"]), float(x["si"]) if x["si"] else None, int(x["in_top"]), int(x["in_bottom"])) for x in rows]
    assert got == approx_rows(EXPECTED_K2)
    assert [x["selective"] for x in rows] == ["1", "0", "0"]


@pytest.mark.parametrize("url", PAGES)
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
    assert [(int(r[0]), r[1], int(r[2]), int(r[3])) for r in table] == [
        (u["unit"], "n/a" if u["si"] is None else f"{u['si']:.3f}", u["in_top"], u["in_bottom"]) for u in body["units"]
    ]
    fig = page.figures["scatter-data"]
    points = [(x, y, c[0]) for t in fig["data"] for x, y, c in zip(t["x"], t["y"], t["customdata"])]
    assert sorted(points, key=lambda p: p[2]) == [(u["in_top"], u["in_bottom"], u["unit"]) for u in body["units"]]
    red = next(t for t in fig["data"] if t["marker"]["color"] == "#d62728")
    assert [c[0] for c in red["customdata"]] == [0]  # the selective unit
    assert [c[2] for c in red["customdata"]] == ["/layers/mixed4c/units/0?k=2"]  # clicking opens the unit
    lines = {(s["x0"], s["x1"], s["y0"], s["y1"]) for s in fig["layout"]["shapes"]}
    assert lines == {(1.0, 1.0, 0, 1), (0, 1, 1.0, 1.0)}  # dashed base-rate lines at 2 x 3/6
    assert all(s["line"]["dash"] == "dash" for s in fig["layout"]["shapes"])
    assert "/api/layers/mixed4c.csv?k=2" in page.hrefs()


def test_unit_page_shows_images_and_navigation(client: TestClient) -> None:
    url = "/layers/mixed4c/units/1?n=2&k=2"
    page = Page(client.get(url).text)
    body = client.get(twin(url)).json()
    thumbs = [e["thumbnail"] for kind in ("positive", "near_zero", "negative") for e in body[kind]]
    assert [img["src"] for img in page.images] == thumbs
    hrefs = page.hrefs()
    assert {"/layers/mixed4c/units/0?k=2&n=2", "/layers/mixed4c/units/2?k=2&n=2", "/layers/mixed4c?k=2"} <= set(hrefs)
    assert all(e["url"] in hrefs for e in body["positive"])  # each image links to the full file
    hist = page.figures["histogram-data"]
    assert [t["customdata"] for t in hist["data"]] == [body["histogram"]["category"], body["histogram"]["rest"]]


def test_layers_page_table_and_chart(client: TestClient) -> None:
    page = Page(client.get("/layers?k=2").text)
    body = client.get("/api/layers?k=2").json()
    table = page.rows["table0"][1:]
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
    assert max(img.size) == 32 and img.size == (32, 24)  # 64 x 48 kept in proportion
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
    assert real_client.get("/api/layers/mixed4c").json()["source"] == "precomputed"
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
