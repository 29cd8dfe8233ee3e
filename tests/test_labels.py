"""Unit labels (unitscope.labels, publication's unit_labels) and the search over them (`/units`, `/jump`).

The statistics are checked against an independent implementation: pairs counted one by one for the AUROC,
scipy's Mann-Whitney for p and scipy's Benjamini-Hochberg for q; the labels against a hand-built layer
whose answer is known, a unit that prefers nothing among it.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
import numpy as np
import pytest
import scipy.stats as sps
from fastapi.testclient import TestClient

from unitscope.labels import (
    NOTHING,
    Candidates,
    auroc_lower_bound,
    label_terms,
    label_text,
)

# Six classes, each 20 images: A and B are retrievers (synset R), C and D wolves (synset W); R and W are canines (K).
CLASSES = ("nA", "nB", "nC", "nD", "nE", "nF")
NAMES = {"nA": "golden", "nB": "labrador", "nC": "grey wolf", "nD": "red wolf", "nE": "daisy", "nF": "stupa",
         "nR": "retriever", "nW": "wolf", "nK": "canine", "nP": "plant"}
PARENTS = {"nA": ("nR",), "nB": ("nR",), "nC": ("nW",), "nD": ("nW",), "nR": ("nK",), "nW": ("nK",),
           "nE": ("nP",), "nF": ("nS",)}  # nP and nS cover one class each: no candidates
PER_CLASS = 20


def hand_layer() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positive, negative, codes) of 4 units whose answers are known."""
    rng = np.random.default_rng(7)
    codes = np.repeat(np.arange(len(CLASSES)), PER_CLASS)
    n = len(codes)
    pos, neg = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
    pos[codes == 0, 0] += 6.0  # unit 0: golden retrievers drive its max far above everything else
    neg[codes == 4, 0] -= 6.0  # ... and daisies drive its min far below
    pos[np.isin(codes, (2, 3)), 1] += 6.0  # unit 1: both wolves: the synset beats either class
    neg[:, 2] = pos[:, 2] = 1.0  # unit 2: the same response to every image: prefers nothing
    return pos, neg, codes  # unit 3: noise


def candidates() -> Candidates:
    return Candidates.build(CLASSES, NAMES, PARENTS)


def test_candidates_are_the_classes_and_the_synsets_above_two_of_them() -> None:
    found = candidates()
    assert found.wnids == (*CLASSES, "nK", "nR", "nW")
    assert found.kinds == ("class",) * 6 + ("synset",) * 3
    assert found.members[6].tolist() == [1, 1, 1, 1, 0, 0]  # canine: both retrievers and both wolves
    assert found.members[7].tolist() == [1, 1, 0, 0, 0, 0]


def test_labels_of_a_hand_built_layer() -> None:
    pos, neg, codes = hand_layer()
    terms = label_terms(pos, neg, codes, candidates())
    golden = terms["excites"][0][0]
    assert (golden.name, golden.kind, golden.images, golden.auroc) == ("golden", "class", 20, 1.0)
    assert terms["inhibits"][0][0].name == "daisy" and terms["inhibits"][0][0].auroc == 1.0
    assert label_text(terms["excites"][0], terms["inhibits"][0]) == "+ golden (1.00) · − daisy (1.00)"
    # Every wolf above every other image: the synset (40 images) has AUROC 1; each wolf class is above the 80
    # others but level with the other wolf class, about (80 + 20 / 2) / 100 = 0.9.
    wolves = terms["excites"][1]
    assert (wolves[0].name, wolves[0].kind, wolves[0].auroc) == ("wolf", "synset", 1.0)
    assert {t.name for t in wolves[1:]} == {"grey wolf", "red wolf"}
    assert all(0.85 < t.auroc < 0.95 for t in wolves[1:])
    assert terms["excites"][2] == terms["inhibits"][2] == []
    assert label_text(terms["excites"][2], terms["inhibits"][2]) == NOTHING


def brute_auroc(x: np.ndarray, y: np.ndarray) -> float:
    """P(x > y) + P(x = y) / 2 over every pair."""
    diff = x[:, None] - y[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def test_auroc_p_and_q_match_an_independent_implementation() -> None:
    pos, neg, codes = hand_layer()
    found = candidates()
    terms = label_terms(pos, neg, codes, found)
    for unit in (0, 1, 3):
        for side, values, sign in (("excites", pos, 1), ("inhibits", neg, -1)):
            x = sign * values[:, unit]
            groups = [np.isin(codes, np.flatnonzero(found.members[k])) for k in range(len(found.wnids))]
            p = np.array([sps.mannwhitneyu(x[g], x[~g], alternative="greater", method="asymptotic",
                                           use_continuity=True).pvalue for g in groups])
            q = sps.false_discovery_control(p)
            for term in terms[side][unit]:
                k = found.wnids.index(term.wnid)
                assert term.auroc == pytest.approx(brute_auroc(x[groups[k]], x[~groups[k]]), abs=1e-12)
                assert term.q == pytest.approx(q[k], rel=1e-9)
                assert term.images == groups[k].sum()
            # Exactly the candidates with q < 0.05 (at most three) are kept.
            assert len(terms[side][unit]) == min(3, int((q < 0.05).sum()))


def test_the_lower_bound_ranks_a_small_class_below_a_large_one_of_the_same_auroc() -> None:
    low = auroc_lower_bound(np.array([0.9, 0.9, 0.5]), np.array([4, 150, 100]), np.array([6000, 6000, 6000]))
    assert low[0] < low[1] < 0.9
    # Hanley & McNeil's SE at A = 0.9, n1 = 150, n2 = 6000, by hand: Q1 = 0.9 / 1.1 = 0.81818, Q2 = 1.62 / 1.9 =
    # 0.85263; (0.09 + 149 * 0.00818 + 5999 * 0.04263) / 900,000 = 2.856e-4, whose root is 0.01690.
    assert 0.9 - low[1] == pytest.approx(1.96 * 0.016900, rel=1e-4)


# ------------------------------------------------------------------------------- published and served


def test_publication_stores_every_units_label_as_computed(real_db: Path) -> None:
    with duckdb.connect(str(real_db), read_only=True) as con:
        units = dict(con.execute("SELECT layer, count(*) FROM units GROUP BY layer").fetchall())
        labelled = dict(con.execute("SELECT layer, count(*) FROM unit_labels GROUP BY layer").fetchall())
        assert labelled == units
        bad = con.execute("SELECT count(*) FROM unit_label_terms WHERE q >= 0.05 OR rank > 3 "
                          "OR (side = 'excites' AND auroc <= 0.5) OR (side = 'inhibits' AND auroc <= 0.5)").fetchone()
        assert bad == (0,)
        # The first terms spell the label.
        for layer, unit, label in con.execute("SELECT layer, unit, label FROM unit_labels USING SAMPLE 40 ROWS "
                                              "(reservoir, 1)").fetchall():
            firsts = dict(con.execute("SELECT side, name || ' (' || printf('%.2f', auroc) || ')' FROM "
                                      "unit_label_terms WHERE layer = ? AND unit = ? AND rank = 1", [layer, unit])
                          .fetchall())
            parts = [f"{s} {firsts[side]}" for side, s in (("excites", "+"), ("inhibits", "−")) if side in firsts]
            assert label == (" · ".join(parts) or NOTHING)


def test_unit_page_layer_table_and_csv_show_the_label(real_client: TestClient, real_db: Path) -> None:
    with duckdb.connect(str(real_db), read_only=True) as con:
        layer, unit, label = con.execute("SELECT layer, unit, label FROM unit_labels ORDER BY layer, unit "
                                         "LIMIT 1").fetchone()
    body = real_client.get(f"/api/layers/{layer}/units/{unit}").json()
    assert body["label"]["label"] == label
    table = real_client.get(f"/api/layers/{layer}").json()
    assert next(u for u in table["units"] if u["unit"] == unit)["label"] == label
    rows = list(csv.DictReader(io.StringIO(real_client.get(f"/api/layers/{layer}.csv").text)))
    assert next(r for r in rows if int(r["unit"]) == unit)["label"] == label
    assert label in real_client.get(f"/layers/{layer}/units/{unit}").text


def test_search_finds_units_by_a_term_sorted_as_asked(real_client: TestClient, real_db: Path) -> None:
    with duckdb.connect(str(real_db), read_only=True) as con:
        name = con.execute("SELECT name FROM unit_label_terms GROUP BY name ORDER BY count(*) DESC, name "
                           "LIMIT 1").fetchone()[0]
        expected = con.execute(
            "SELECT run_id, layer, unit, max(auroc) FROM unit_label_terms WHERE q <= 0.05 AND lower(name) LIKE ? "
            "GROUP BY ALL ORDER BY 4 DESC, 1 DESC, 2, 3", [f"%{name.lower()}%"]).fetchall()
    body = real_client.get("/api/units", params={"q": name.upper(), "sort": "auroc", "limit": 5}).json()
    assert set(body) >= {"total", "units"} and body["total"] == len(expected)
    assert [(u["run_id"], u["layer"], u["unit"]) for u in body["units"]] == [e[:3] for e in expected[:5]]
    first = body["units"][0]
    assert set(first) >= {"run_id", "layer", "unit", "label", "excites", "inhibits", "si", "auroc", "url"}
    assert first["auroc"] == pytest.approx(expected[0][3])
    assert set(first["excites"][0]) >= {"name", "wnid", "auroc", "q"}
    assert real_client.get(first["url"]).status_code == 200
    # Pages: the second page starts where the first ended.
    second = real_client.get("/api/units", params={"q": name, "limit": 2, "offset": 2}).json()
    assert [(u["layer"], u["unit"]) for u in second["units"]] == [e[1:3] for e in expected[2:4]]
    # Past the last hit: no hits, and "previous" is the last page that has some (not offset - limit).
    past = real_client.get("/api/units", params={"q": name, "limit": 2, "offset": 999_999}).json()
    last = (len(expected) - 1) // 2 * 2
    assert past["units"] == [] and past["next_url"] is None and past["total"] == len(expected)
    assert parse_qs(urlsplit(past["prev_url"]).query).get("offset", ["0"]) == [str(last)], past["prev_url"]
    by_si = real_client.get("/api/units", params={"q": name, "sort": "si", "limit": 50}).json()["units"]
    sis = [u["si"] for u in by_si if u["si"] is not None]
    assert sis == sorted(sis, reverse=True)
    assert real_client.get("/api/units", params={"q": "no such thing at all"}).json() | {"units": []} == \
        real_client.get("/api/units", params={"q": "no such thing at all"}).json()
    assert real_client.get("/units", params={"q": name}).status_code == 200


def test_search_by_side_and_q_finds_only_units_with_such_a_term(real_client: TestClient, real_db: Path) -> None:
    """A unit whose label names the text on the other side, or only at a larger q, is not a hit."""
    with duckdb.connect(str(real_db), read_only=True) as con:
        # A name on both sides, in the label of units that have it only on the other side.
        name = con.execute("SELECT name FROM unit_label_terms GROUP BY name HAVING count(DISTINCT side) = 2 "
                           "ORDER BY count(*) DESC, name LIMIT 1").fetchone()[0]
        q_cut = con.execute("SELECT median(q) FROM unit_label_terms WHERE lower(name) LIKE ?",
                            [f"%{name.lower()}%"]).fetchone()[0]
        for side in ("excites", "inhibits", None):
            for max_q in (0.05, q_cut):
                expected = con.execute(
                    "SELECT DISTINCT run_id, layer, unit FROM unit_label_terms WHERE (side = ? OR ? IS NULL) "
                    "AND q <= ? AND (lower(name) LIKE ? OR lower(wnid) LIKE ?)",
                    [side, side, max_q, f"%{name.lower()}%", f"%{name.lower()}%"]).fetchall()
                found: list[dict] = []
                while len(found) < len(expected) + 1:
                    body = real_client.get("/api/units", params={"q": name, "side": side or "", "max_q": max_q,
                                                                 "limit": 500, "offset": len(found)}).json()
                    if not body["units"]:
                        break
                    found += body["units"]
                assert body["total"] == len(found) == len(expected) > 0, (side, max_q)
                assert {(u["run_id"], u["layer"], u["unit"]) for u in found} == set(expected)
                assert all(u["auroc"] is not None for u in found)


def test_a_unit_without_terms_is_found_by_its_label_alone_and_on_no_side(real_db: Path, tmp_path: Path) -> None:
    """A unit that prefers nothing has no terms: its label's text finds it, unless a side is asked for."""
    import unitscope

    db = tmp_path / "copy.duckdb"
    shutil.copy(real_db, db)
    with duckdb.connect(str(db)) as con:
        run_id, layer, unit = con.execute("SELECT run_id, layer, unit FROM unit_label_terms ORDER BY ALL LIMIT 1"
                                          ).fetchone()  # a unit with terms
        con.execute("DELETE FROM unit_label_terms WHERE run_id = ? AND layer = ? AND unit = ?", [run_id, layer, unit])
        con.execute("UPDATE unit_labels SET label = ? WHERE run_id = ? AND layer = ? AND unit = ?",
                    [NOTHING, run_id, layer, unit])
        others = con.execute("SELECT count(*) FROM unit_labels WHERE label = ?", [NOTHING]).fetchone()[0] - 1
    with unitscope.open(db) as api:
        found = api.search("prefers no class", limit=500).fetchall()
        assert (run_id, layer, unit) in {row[:3] for row in found} and len(found) == min(500, others + 1)
        assert api.search("prefers no class", side="excites", limit=500).fetchall() == []


def test_the_search_form_keeps_every_filter_and_an_empty_field_means_any(real_client: TestClient,
                                                                        real_db: Path) -> None:
    """Changing the sort on /units keeps the layer, side, q and page size (the form carries them all)."""
    with duckdb.connect(str(real_db), read_only=True) as con:
        layer = con.execute("SELECT layer FROM unit_label_terms GROUP BY layer ORDER BY count(*) DESC LIMIT 1"
                            ).fetchone()[0]
    html = real_client.get("/units", params={"q": "dog", "layer": layer, "side": "inhibits", "max_q": 0.01,
                                             "limit": 7, "sort": "si", "run": 1}).text
    start = html.index('<form class="params"')
    form = html[start:html.index("</form>", start)]
    for field in (f'name="layer" value="{layer}"', '<option value="inhibits" selected>', 'name="max_q" value="0.01"',
                  'name="limit" value="7"', '<option value="si" selected>', 'type="hidden" name="run" value="1"'):
        assert field in form, field
    # What the form sends with its fields left empty: every layer, either side.
    sent = real_client.get("/api/units", params={"q": "dog", "layer": "", "side": "", "max_q": 0.05, "limit": 50})
    assert sent.status_code == 200 and sent.json()["units"] == real_client.get("/api/units", params={"q": "dog"}).json()["units"]


def test_the_jump_box_goes_to_a_unit_or_to_the_search(real_client: TestClient, real_db: Path) -> None:
    with duckdb.connect(str(real_db), read_only=True) as con:
        layer = con.execute("SELECT layer FROM units ORDER BY layer LIMIT 1").fetchone()[0]
    for text in (f"{layer} 3", f"{layer}/3", f" {layer}  3 "):
        r = real_client.get("/jump", params={"q": text}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith(f"/layers/{layer}/units/3")
    r = real_client.get("/jump", params={"q": f"{layer.upper()} 3"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith(f"/layers/{layer}/units/3")  # any case
    # Past the layer's end: the unit page, whose 404 says which units the layer has.
    r = real_client.get("/jump", params={"q": f"{layer} 99999"}, follow_redirects=False)
    assert r.headers["location"].endswith(f"/layers/{layer}/units/99999")
    with duckdb.connect(str(real_db), read_only=True) as con:
        units = con.execute("SELECT units FROM layers WHERE layer = ? LIMIT 1", [layer]).fetchone()[0]
    missing = real_client.get(r.headers["location"])
    assert missing.status_code == 404 and f"units 0 to {units - 1}" in missing.text
    r = real_client.get("/jump", params={"q": "retriever"}, follow_redirects=False)
    assert r.headers["location"].endswith("/units?q=retriever")


def test_the_python_api_gives_the_search_and_the_label_of_the_pages(real_client: TestClient, real_db: Path) -> None:
    import unitscope

    body = real_client.get("/api/units", params={"sort": "si", "limit": 7}).json()
    with unitscope.open(real_db) as db:
        relation = db.search(sort="si", limit=7)
        rows = [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]
        first = body["units"][0]
        label = db.run(first["run_id"]).layer(first["layer"]).unit(first["unit"]).label()
    assert [(r["layer"], r["unit"], r["label"]) for r in rows] == [(u["layer"], u["unit"], u["label"])
                                                                   for u in body["units"]]
    assert label is not None and label.label == first["label"]
    assert [t.name for t in label.excites] == [t["name"] for t in first["excites"]]
