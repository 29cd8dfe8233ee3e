"""A unit's class profile (`/layers/{layer}/units/{unit}/classes` and the unit page's summary): values on the
hand-made DB against numpy over the raw responses it holds, the page against its twin, and the errors."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures import (
    CATEGORIES,
    DOG,
    GOLDFISH,
    IMAGES,
    LAYERS,
    TENCH,
    Page,
    make_settings,
)
from hand_run import publish_mixed4c_run

from app.main import create_app
from app.pages import classes as class_profile
from unitscope import claim_rules
from worker.categories import builtin_category

_STAT = {"mean": 0, "max": 1, "min": 2}


def expected_profile(layer: str, unit: int, stat: str, category: str) -> list[dict]:
    """Every class of the hand-made run, by numpy: n, mean and median of the unit's responses, mean descending."""
    values = np.array(LAYERS[layer][unit], dtype=np.float32)[:, _STAT[stat]].astype(np.float64)  # FLOAT, as stored
    wnids = np.array([wnid for _, _, wnid, _, _ in IMAGES])
    names = {wnid: name for _, _, wnid, _, name in IMAGES}
    rows = []
    for wnid in sorted(set(wnids)):
        v = values[wnids == wnid]
        rows.append({"wnid": wnid, "class_name": names[wnid], "n": len(v), "mean": float(v.mean()),
                     "median": float(np.median(v)), "is_category": wnid in CATEGORIES[category],
                     "few_images": len(v) < claim_rules.FEW_IMAGES})
    # Highest mean first; equal means by WNID (the list is in WNID order and the sort is stable).
    return sorted(rows, key=lambda r: -r["mean"])


def expected_beats(rows: list[dict]) -> dict:
    """The median over the category's classes of their means, and the other classes above it, both over classes
    with FEW_IMAGES or more images (a class of fewer is flagged and not ranked)."""
    means = [r["mean"] for r in rows if r["is_category"] and r["n"] >= claim_rules.FEW_IMAGES]
    median = float(np.median(means)) if means else None
    beaten = [{"wnid": r["wnid"], "class_name": r["class_name"], "mean": r["mean"]}
              for r in rows if median is not None and not r["is_category"] and r["n"] >= claim_rules.FEW_IMAGES
              and r["mean"] > median]
    return {"count": len(beaten), "median": median, "classes": beaten}


def approx(rows: list[dict]) -> list[dict]:
    return [{k: pytest.approx(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def approx_beats(beats: dict) -> dict:
    return {**beats, "median": pytest.approx(beats["median"]), "classes": approx(beats["classes"])}


CASES = [
    ("mixed4c", 0, "max", "dog"),
    ("mixed4c", 0, "mean", "fish"),
    ("mixed4c", 1, "max", "dog"),
    ("mixed4c", 1, "mean", "fish"),
    ("mixed4c", 2, "max", "dog"),
    ("mixed4c", 2, "min", "fish"),
    ("conv1", 0, "min", "dog"),
    ("conv1", 1, "max", "fish"),
]


def test_the_oracle_agrees_with_the_hand_worked_cases() -> None:
    # Unit 0's max: Chihuahua 10 8 6 -> mean 8, median 8; goldfish 4; tench 0 2 -> mean 1, median 1.
    rows = expected_profile("mixed4c", 0, "max", "fish")
    assert [(r["wnid"], r["n"], r["mean"], r["median"]) for r in rows] == [
        (DOG, 3, 8.0, 8.0), (GOLDFISH, 1, 4.0, 4.0), (TENCH, 2, 1.0, 1.0)]
    # fish's classes have means 4 and 1 (its median class 2.5, which the Chihuahua's 8 would beat), but none of
    # the classes has 5 images: none is ranked, so there is no median class and nothing beats it.
    assert expected_beats(rows) == {"count": 0, "median": None, "classes": []}
    ranked = [{**r, "n": 5} for r in rows]
    assert expected_beats(ranked) == {"count": 1, "median": 2.5,
                                      "classes": [{"wnid": DOG, "class_name": "Chihuahua", "mean": 8.0}]}
    # Unit 1's max is 5 everywhere: equal means keep WNID order.
    assert [r["wnid"] for r in expected_profile("mixed4c", 1, "max", "dog")] == sorted([DOG, TENCH, GOLDFISH])


@pytest.mark.parametrize(("layer", "unit", "stat", "category"), CASES)
def test_class_profile_matches_numpy(client: TestClient, layer: str, unit: int, stat: str, category: str) -> None:
    params = {"stat": stat, "category": category}
    body = client.get(f"/api/layers/{layer}/units/{unit}/classes?{urlencode(params)}").json()
    want = expected_profile(layer, unit, stat, category)
    assert body["classes"] == approx(want)  # values, sort order, category marks and few_images flags at once
    assert body["beats_category_median"] == approx_beats(expected_beats(want))
    assert (body["run_id"], body["layer"], body["unit"], body["units"], body["stat"], body["category"]) == (
        1, layer, unit, len(LAYERS[layer]), stat, category)
    assert body["few_images"] == claim_rules.FEW_IMAGES and body["categories"] == list(CATEGORIES)
    means = [c["mean"] for c in body["classes"]]
    assert means == sorted(means, reverse=True)
    assert sum(c["n"] for c in body["classes"]) == len(IMAGES)


def test_default_stat_is_max_and_classes_with_few_images_are_flagged_not_hidden(client: TestClient) -> None:
    body = client.get("/api/layers/mixed4c/units/2/classes").json()
    assert body["stat"] == "max" and body["category"] == "dog"
    # Unit 2's max: Chihuahua 0 0 0, tench 3 6, goldfish 9. Fewer than 5 images: flagged, still listed.
    assert [(c["class_name"], c["n"], c["mean"], c["few_images"]) for c in body["classes"]] == [
        ("goldfish", 1, 9.0, True), ("tench", 2, 4.5, True), ("Chihuahua", 3, 0.0, True)]
    # ... and not ranked: with no dog class of 5 images there is no median class to beat, whatever the means.
    beats = body["beats_category_median"]
    assert (beats["count"], beats["median"], beats["classes"]) == (0, None, [])


def _row(key: str, mean: float, is_category: bool) -> claim_rules.ClassRow:
    return claim_rules.ClassRow(key, 5, mean, mean, is_category, False)


@pytest.mark.parametrize("classes", [45, 30, 3])
def test_summary_takes_both_ends_without_overlap_and_ranks_the_category(classes: int) -> None:
    # Means classes-1 .. 0, every third class (by rank) in the category.
    rows = [_row(f"c{i:03d}", float(classes - 1 - i), i % 3 == 0) for i in range(classes)]
    names = {r.key: f"class {r.key}" for r in rows}
    s = class_profile.summary(rows, names, "mean")
    top, bottom = [e.wnid for e in s.top], [e.wnid for e in s.bottom]
    assert top == [r.key for r in rows[:20]]
    assert bottom == [r.key for r in rows[max(20, classes - 20):]]  # the last 20, none of them in top
    assert s.classes == classes and s.stat == "mean"
    members = [r for r in rows if r.is_category]
    assert [(m.wnid, m.rank, m.class_name) for m in s.category.members] == [
        (r.key, rows.index(r) + 1, names[r.key]) for r in members]
    cat = [r.mean for r in members]
    rest = [r.mean for r in rows if not r.is_category]
    assert (s.category.classes, s.category.min, s.category.max) == (len(cat), min(cat), max(cat))
    assert (s.category.q1, s.category.median, s.category.q3) == pytest.approx(
        (np.percentile(cat, 25), np.median(cat), np.percentile(cat, 75)))
    assert s.rest.classes == len(rest) and (s.rest.q1, s.rest.median, s.rest.q3) == pytest.approx(
        (np.percentile(rest, 25), np.median(rest), np.percentile(rest, 75)))
    assert s.beats_category_median.median == s.category.median
    assert [c.wnid for c in s.beats_category_median.classes] == claim_rules.beats_category_median(rows)


@pytest.mark.parametrize("params", [{}, {"si_stat": "mean", "category": "fish"}, {"si_stat": "min", "k": 2}])
def test_unit_page_summary_is_the_class_profile_on_si_stat(client: TestClient, params: dict) -> None:
    unit = client.get(f"/api/layers/mixed4c/units/0?{urlencode(params)}").json()
    stat, category = params.get("si_stat", "max"), params.get("category", "dog")
    profile = client.get(f"/api/layers/mixed4c/units/0/classes?stat={stat}&category={category}").json()
    summary = unit["classes"]
    assert summary["stat"] == stat and summary["classes"] == len(profile["classes"]) == 3
    assert summary["top"] == profile["classes"] and summary["bottom"] == []  # 3 classes: all of them on top
    assert summary["beats_category_median"] == profile["beats_category_median"]
    members = [(c["wnid"], rank) for rank, c in enumerate(profile["classes"], 1) if c["is_category"]]
    assert [(m["wnid"], m["rank"]) for m in summary["category"]["members"]] == members
    # Both boxes are over the classes of 5 or more images, none in the hand-made run: no spread, no median class,
    # every class counted as left out.
    assert summary["category"] | {"members": []} == {"classes": 0, "few_images": len(members), "min": None, "q1": None,
                                                     "median": None, "q3": None, "max": None, "members": []}
    assert profile["beats_category_median"]["median"] is None
    assert (summary["rest"]["classes"], summary["rest"]["few_images"]) == (0, 3 - len(members))


def test_unit_page_shows_the_class_charts_the_beating_classes_and_links_to_the_class_page(
        client: TestClient) -> None:
    url = "/layers/mixed4c/units/2?category=dog&si_stat=mean&k=2"
    page = Page(client.get(url).text)
    body = client.get("/api" + url).json()["classes"]
    assert "/layers/mixed4c/units/2/classes?stat=mean" in page.hrefs()
    assert "/layers/mixed4c/units/2/classes" in Page(client.get("/layers/mixed4c/units/2?category=dog").text).hrefs()
    assert "/layers/mixed4c/units/2/classes?category=fish" in Page(
        client.get("/layers/mixed4c/units/2?category=fish").text).hrefs()
    bars = page.figures["class-bars-data"]["data"]
    red = next(t for t in bars if t["marker"]["color"] == "#d62728")
    shown = sorted((x, c[1], y) for t in bars for x, y, c in zip(t["x"], t["y"], t["customdata"]))
    assert [(wnid, y) for _, wnid, y in shown] == [(e["wnid"], e["mean"]) for e in body["top"] + body["bottom"]]
    assert [c[1] for c in red["customdata"]] == [e["wnid"] for e in body["top"] + body["bottom"] if e["is_category"]]
    # Every class has fewer than 5 images: the category's are faded points beside no box, and the rest has none.
    (spread,) = page.figures["class-spread-data"]["data"]
    assert spread["type"] == "scatter" and spread["x"] == [m["mean"] for m in body["category"]["members"]]
    # No class of the hand-made run has 5 images: none is ranked, and the page says why (the listing of the
    # classes that beat the category's median class is checked on a run with 50 images a class, test_claims.py).
    assert body["beats_category_median"] == {"count": 0, "median": None, "classes": []}
    assert page.find_all(id="beats-category-median") == []
    assert any(p.text.startswith("No class of dog has 5 or more images in this run") for p in page.find_all("p"))


# A published run where some classes have fewer than FEW_IMAGES images: unit 0's max per class, as
# (wnid, values). Dogs: Chihuahua (mean 1), Japanese spaniel (2), Maltese (4), and Pekinese, only 2 images (10);
# others: tench (3), goldfish (0.5), and great white shark, 1 image (8).
THIN_CLASSES = [
    ("n02085620", [0.5, 1.5, 1.0, 1.0, 0.75, 1.25]),
    ("n02085782", [2.0, 2.0, 1.5, 2.5, 2.0, 2.0]),
    ("n02085936", [4.0, 3.5, 4.5, 4.0, 4.0, 4.0]),
    ("n02086079", [10.0, 10.0]),
    ("n01440764", [3.0, 2.5, 3.5, 3.0, 3.0, 3.0]),
    ("n01443537", [0.5, 0.25, 0.75, 0.5, 0.5, 0.5]),
    ("n01484850", [8.0]),
]


@pytest.fixture(scope="module")
def thin(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("thin")
    wnids = tuple(w for w, values in THIN_CLASSES for _ in values)
    stats = np.zeros((len(wnids), 2, 3), dtype=np.float32)
    stats[:, 0, 1] = [v for _, values in THIN_CLASSES for v in values]
    stats[:, 1, 1] = np.arange(len(wnids)) % 3  # a second unit, so the layer is a layer
    stats[:, :, 2] = -stats[:, :, 1]
    stats[:, :, 0] = 0.5 * (stats[:, :, 1] + stats[:, :, 2])
    publish_mixed4c_run(root / "thin.duckdb", stats, wnids, (builtin_category("dog"),))
    with TestClient(create_app(make_settings(root / "thin.duckdb", root))) as c:
        yield c


def test_the_unit_page_draws_and_prints_one_median_class(thin: TestClient) -> None:
    """The category's median class is the median over its classes of 5 or more images (1, 2, 4: 2), not over all
    four (1, 2, 4, 10: 3): the box, the dashed line, the printed value and both JSON medians are that one number."""
    url = "/layers/mixed4c/units/0?si_stat=max"
    c = thin.get("/api" + url).json()["classes"]
    assert c["beats_category_median"] == {"count": 1, "median": 2.0,
                                          "classes": [{"wnid": "n01440764", "class_name": "n01440764", "mean": 3.0}]}
    # Ranks by mean: Pekinese 10, shark 8, Maltese 4, tench 3, spaniel 2, Chihuahua 1, goldfish 0.5.
    assert [(m["wnid"], m["rank"], m["few_images"]) for m in c["category"]["members"]] == [
        ("n02086079", 1, True), ("n02085936", 3, False), ("n02085782", 5, False), ("n02085620", 6, False)]
    # The boxes: the ranked dogs 4, 2, 1 and the ranked others 3, 0.5 (numpy's linear quartiles, by hand).
    assert {k: v for k, v in c["category"].items() if k != "members"} == {
        "classes": 3, "few_images": 1, "min": 1.0, "q1": 1.5, "median": 2.0, "q3": 3.0, "max": 4.0}
    assert c["rest"] == {"classes": 2, "few_images": 1, "min": 0.5, "q1": 1.125, "median": 1.75, "q3": 2.375,
                         "max": 3.0}
    page = Page(thin.get(url).text)
    bars = page.figures["class-bars-data"]["layout"]
    assert [(s["y0"], s["y1"]) for s in bars["shapes"]] == [(2.0, 2.0)]
    assert [a["text"] for a in bars["annotations"]] == ["dog's median class 2"]
    box, faded = page.figures["class-spread-data"]["data"][:2]
    assert box["type"] == "box" and box["x"] == [4.0, 2.0, 1.0] and float(np.median(box["x"])) == 2.0
    assert faded["type"] == "scatter" and faded["x"] == [10.0] and faded["y"] == [box["name"]]
    summary = page.by_id("beats-category-median").one("summary").text
    assert summary.startswith("1 of 2 other classes have a higher mean than dog's median class (2.000, ")
    # The class page draws the same line.
    assert thin.get("/api/layers/mixed4c/units/0/classes").json()["beats_category_median"]["median"] == 2.0
    shapes = Page(thin.get("/layers/mixed4c/units/0/classes").text).figures["class-bars-data"]["layout"]["shapes"]
    assert [(s["y0"], s["y1"]) for s in shapes] == [(2.0, 2.0)]

def test_class_page_lists_every_class_of_its_twin_and_links_back(client: TestClient) -> None:
    url = "/layers/mixed4c/units/0/classes?category=fish&stat=mean"
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    api = "/api" + url
    assert r.headers["link"] == f'<{api}>; rel="alternate"; type="application/json"'
    page = Page(r.text)
    body = client.get(api).json()
    table = page.rows["classes-table"]
    assert table[0] == ["rank", "class", "WNID", "images", "mean", "median", "fish"]
    assert [(int(row[0]), row[1], row[2], row[3], row[4], row[5], row[6]) for row in table[1:]] == [
        (i, c["class_name"], c["wnid"], f"{c['n']} few" if c["few_images"] else str(c["n"]),
         f"{c['mean']:.3f}", f"{c['median']:.3f}", "yes" if c["is_category"] else "")
        for i, c in enumerate(body["classes"], 1)]
    bars = page.figures["class-bars-data"]["data"]
    assert sorted((x, c[1]) for t in bars for x, c in zip(t["x"], t["customdata"])) == [
        (i, c["wnid"]) for i, c in enumerate(body["classes"])]
    hrefs = page.hrefs()
    assert {api, "/layers/mixed4c/units/0?category=fish", "/layers/mixed4c?category=fish"} <= set(hrefs)


@pytest.mark.parametrize(("url", "detail"), [
    ("/api/layers/mixed4c/units/3/classes", "unit 3 is not in mixed4c"),
    ("/api/layers/nope/units/0/classes", "unknown layer 'nope'"),
    ("/api/layers/mixed4c/units/0/classes?category=cat", "unknown category 'cat'"),
    ("/api/layers/mixed4c/units/0/classes?run=2", "no complete run 2"),
])
def test_unknown_unit_layer_category_or_run_is_404(client: TestClient, url: str, detail: str) -> None:
    r = client.get(url)
    assert r.status_code == 404 and detail in r.json()["error"]["detail"]
    page = client.get(url.removeprefix("/api"))
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("query", ["stat=abs", "stat=", "stat=MAX", "run=-1", "category="])
def test_bad_parameters_are_422(client: TestClient, query: str) -> None:
    assert client.get(f"/api/layers/mixed4c/units/0/classes?{query}").status_code == 422
    assert client.get(f"/layers/mixed4c/units/0/classes?{query}").status_code == 422


def test_real_worker_db_class_profile_against_its_responses(real_client: TestClient, real_db: Path) -> None:
    body = real_client.get("/api/layers/mixed4c/units/7/classes?stat=min").json()
    con = duckdb.connect(str(real_db), read_only=True)
    try:
        run = con.execute("SELECT max(run_id) FROM runs WHERE status = 'complete'").fetchone()[0]
        rows = con.execute(
            """SELECT i.wnid, r.act_min, i.wnid IN (SELECT wnid FROM categories WHERE run_id = $run AND category = 'dog')
               FROM responses r JOIN images i USING (run_id, image_id)
               WHERE r.run_id = $run AND r.layer = 'mixed4c' AND r.unit = 7""", {"run": run}).fetchall()
    finally:
        con.close()
    wnids = np.array([w for w, _, _ in rows])
    values = np.array([v for _, v, _ in rows], dtype=np.float64)
    dogs = {w for w, _, d in rows if d}
    got = {c["wnid"]: c for c in body["classes"]}
    assert set(got) == set(wnids) and sum(c["n"] for c in got.values()) == len(rows)
    for wnid, c in got.items():
        v = values[wnids == wnid]
        assert (c["n"], c["is_category"], c["few_images"]) == (len(v), wnid in dogs, len(v) < claim_rules.FEW_IMAGES)
        assert (c["mean"], c["median"]) == (pytest.approx(v.mean()), pytest.approx(np.median(v)))
    assert body["beats_category_median"] == approx_beats(expected_beats(body["classes"]))
    assert real_client.get("/layers/mixed4c/units/7/classes?stat=min").status_code == 200


def test_a_class_name_opens_that_classs_images_ranked_by_the_unit(client: TestClient) -> None:
    # mixed4c unit 0's max over images 0-5 is 10, 8, 6, 0, 2, 4 (fixtures.MIXED4C): the tench (images 3 and 4)
    # come 2.0 then 0.0, ranks 5 and 6 of the run's six images; the Chihuahuas are its three strongest.
    tench = client.get("/api/layers/mixed4c/units/0/classes/n01440764").json()
    assert (tench["class_name"], tench["stat"], tench["is_category"]) == ("tench", "max", False)
    assert [(e["image"], e["value"], e["rank"]) for e in tench["images"]] == [(4, 2.0, 5), (3, 0.0, 6)]
    dogs = client.get("/api/layers/mixed4c/units/0/classes/n02085620?stat=min").json()
    # its min: -1, -2, -3 for the dogs, the largest of the run's mins (-7, -8, -9 for the rest)
    assert [(e["image"], e["rank"]) for e in dogs["images"]] == [(0, 1), (1, 2), (2, 3)] and dogs["is_category"]
    assert client.get("/api/layers/mixed4c/units/0/classes/n09999999").status_code == 404
    profile = Page(client.get("/layers/mixed4c/units/0/classes").text)
    assert "/layers/mixed4c/units/0/classes/n01440764" in profile.hrefs()
    page = client.get("/layers/mixed4c/units/0/classes/n01440764")
    assert page.status_code == 200 and "rank 5" in page.text
