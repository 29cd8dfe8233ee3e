"""/claims: each claim's verdict on runs built so that the answer is known, and its numbers recomputed here."""

from __future__ import annotations

import re
from math import comb

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures import Page, make_settings
from hand_run import publish_mixed4c_run

from app.main import create_app
from unitscope import stats
from worker.categories import builtin_category

DOGS = ("n02085620", "n02085782", "n02085936", "n02086079")  # Chihuahua, Japanese spaniel, Maltese, Pekinese
OTHERS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041", "n01514668")
PER_CLASS = 50  # 12 classes: 600 images, 200 dogs
UNITS, SELECTIVE = 40, 8
WNIDS = tuple(w for w in DOGS + OTHERS for _ in range(PER_CLASS))
IS_DOG = np.array([w in DOGS for w in WNIDS])
CAR = OTHERS[-1]  # the other class that the selective units like better than some dogs


def _responses(kind: str, seed: int = 0) -> np.ndarray:
    """[images, units, (mean, max, min)] for a layer whose first SELECTIVE units are dog units of `kind`."""
    rng = np.random.default_rng(seed)
    n = len(WNIDS)
    stats = np.zeros((n, UNITS, 3), dtype=np.float32)
    stats[:, :, 1] = rng.normal(0.0, 1.0, (n, UNITS))  # max
    stats[:, :, 2] = rng.normal(-1.0, 1.0, (n, UNITS))  # min
    dog_rows = np.flatnonzero(IS_DOG)
    is_car = np.array([w == CAR for w in WNIDS])
    if kind in ("two_sided", "one_sided"):
        # Selective: every dog far above the rest on max; the car class above the dog classes' median.
        stats[dog_rows[:, None], np.arange(SELECTIVE), 1] += 12.0 + rng.normal(0, 1.0, (dog_rows.size, SELECTIVE))
        stats[np.flatnonzero(is_car)[:, None], np.arange(SELECTIVE), 1] += 16.0
    if kind == "two_sided":
        # ... and the same units driven far below zero by dogs.
        stats[dog_rows[:, None], np.arange(SELECTIVE), 2] -= 6.0
    if kind == "one_sided":
        # ... and never far below: the whole map is raised by dogs, a half-normal tuning.
        stats[dog_rows[:, None], np.arange(SELECTIVE), 2] += 6.0
    if kind == "centre_surround":
        # The same 100 dogs excite the selective units in one place of the map and inhibit them in another: the
        # strongest negatives are the strongest positives, and no other dog is below the rest.
        same = dog_rows[: dog_rows.size // 2]
        stats[same[:, None], np.arange(SELECTIVE), 1] += 16.0
        stats[same[:, None], np.arange(SELECTIVE), 2] -= 6.0
    if kind == "everyone_negative":
        stats[dog_rows[:, None], np.arange(SELECTIVE), 1] += 12.0
        stats[dog_rows, :, 2] -= 6.0  # every unit, selective or not
    stats[:, :, 0] = (stats[:, :, 1] + stats[:, :, 2]) / 2
    return stats


@pytest.fixture(scope="module")
def claims_of(tmp_path_factory: pytest.TempPathFactory):
    cache: dict[str, dict] = {}

    def get(kind: str, query: str = "") -> dict:
        if (kind, query) not in cache:
            tmp = tmp_path_factory.mktemp(kind)
            publish_mixed4c_run(tmp / "c.duckdb", _responses(kind), WNIDS, (builtin_category("dog"),))
            with TestClient(create_app(make_settings(tmp / "c.duckdb", tmp))) as c:
                body = c.get(f"/api/claims{query}").json()
                page = c.get(f"/claims{query}")
            body["_page"] = page
            cache[(kind, query)] = body
        return cache[(kind, query)]

    return get


def _claim(body: dict, claim_id: str) -> dict:
    return next(c for c in body["claims"] if c["id"] == claim_id)


def test_the_contract_and_the_defaults(claims_of):
    body = claims_of("two_sided")
    assert {"run_id", "layer", "category", "k", "claims"} <= body.keys()
    assert (body["layer"], body["category"], body["k"]) == ("mixed4c", "dog", 100)  # 600 // 6
    assert [c["id"] for c in body["claims"]] == ["selective", "negative", "two_sided", "other_classes", "low_level",
                                                 "axis_aligned", "negative_stimulus", "important"]
    for c in body["claims"]:
        assert {"id", "claim", "test", "value", "control", "verdict", "evidence_url"} <= c.keys()
        assert c["evidence_url"].startswith("/layers/mixed4c")
    assert body["permutations"] == 1000 and body["warnings"] == []


def test_two_sided_selective_units_make_every_claim_hold(claims_of):
    body = claims_of("two_sided")
    verdicts = {c["id"]: c["verdict"] for c in body["claims"]}
    assert verdicts == {"selective": "holds", "negative": "holds", "two_sided": "holds", "other_classes": "holds",
                        "low_level": "cannot_tell",  # a run written without image_stats
                        "axis_aligned": "cannot_tell",  # ... and without random bases
                        "negative_stimulus": "cannot_tell", "important": "cannot_tell"}  # ... and no interventions
    assert "no image_stats" in _claim(body, "low_level")["reason"]
    assert "no random bases" in _claim(body, "axis_aligned")["reason"]
    assert "python -m worker visualize" in _claim(body, "negative_stimulus")["control"]
    assert "python -m worker ablate" in _claim(body, "important")["control"]
    responses = _responses("two_sided")
    si = stats.si(responses[:, :, 1].astype(np.float64), IS_DOG)
    assert _claim(body, "selective")["value"] == (si >= 0.7).sum() == SELECTIVE
    # Every selective unit has all 200 dogs among its 100 most negative: in_bottom = 100 >= base rate 33.3.
    assert _claim(body, "negative")["value"] == 1.0
    assert _claim(body, "two_sided")["value"] == 1.0
    assert _claim(body, "other_classes")["evidence_url"].startswith("/layers/mixed4c/units/")


def test_one_sided_units_are_told_apart(claims_of):
    body = claims_of("one_sided")
    verdicts = {c["id"]: c["verdict"] for c in body["claims"]}
    assert verdicts["selective"] == "holds"
    assert verdicts["two_sided"] == "does_not_hold"  # no dog far below the rest
    responses = _responses("one_sided")
    rest_low = np.quantile(responses[~IS_DOG][:, :SELECTIVE, 2], 0.1, axis=0)
    below = (responses[IS_DOG][:, :SELECTIVE, 2] < rest_low).mean(axis=0)
    assert _claim(body, "two_sided")["value"] == float((below >= 0.05).mean())


def test_a_negative_side_shared_by_every_unit_is_not_specific(claims_of):
    body = claims_of("everyone_negative")
    negative = _claim(body, "negative")
    assert negative["verdict"] == "holds_not_specific"
    assert negative["value"] == 1.0
    assert "of the rest" in negative["reason"]


def test_an_overlapping_k_cannot_tell_for_the_claims_that_count_top_and_bottom_sets(claims_of):
    body = claims_of("two_sided", "?k=400")
    assert body["warnings"] and _claim(body, "negative")["verdict"] == "cannot_tell"
    # SI and its null use no k: `selective` keeps the verdict, value and null of the default k.
    default = _claim(claims_of("two_sided"), "selective")
    overlapping = _claim(body, "selective")
    assert overlapping["verdict"] == default["verdict"] != "cannot_tell"
    assert (overlapping["value"], overlapping["control"]) == (default["value"], default["control"])


def test_the_page_shows_every_verdict_and_links_its_twin(claims_of):
    body = claims_of("two_sided")
    page = body["_page"]
    assert page.status_code == 200
    assert page.headers["link"] == '</api/claims>; rel="alternate"; type="application/json"'
    parsed = Page(page.text)
    rows = [tr for tr in parsed.by_id("claims-table").find_all("tr") if tr.get("id")]
    assert [tr.get("id") for tr in rows] == [f'claim-{c["id"]}' for c in body["claims"]]
    for c in body["claims"]:
        badge = parsed.by_id(f'claim-{c["id"]}').one("span", cls="badge")
        assert badge.classes == ["badge", c["verdict"]] and badge.text == c["verdict"].replace("_", " ")


def test_a_layer_that_is_not_in_the_run_is_404(claims_of, tmp_path):
    publish_mixed4c_run(tmp_path / "c.duckdb", _responses("one_sided"), WNIDS, (builtin_category("dog"),))
    with TestClient(create_app(make_settings(tmp_path / "c.duckdb", tmp_path))) as c:
        r = c.get("/api/claims?layer=mixed9z")
        assert r.status_code == 404 and "mixed9z" in r.json()["error"]["detail"]


def test_a_category_without_images_in_the_run_is_a_warning(tmp_path):
    """Built-in categories are always recorded: a small run may hold no feline. Its layer page says why nothing is
    selective; the dog page of the same run has no such warning."""
    publish_mixed4c_run(tmp_path / "c.duckdb", _responses("one_sided"), WNIDS,
                        (builtin_category("dog"), builtin_category("feline")))
    with TestClient(create_app(make_settings(tmp_path / "c.duckdb", tmp_path))) as c:
        feline = c.get("/api/layers/mixed4c?category=feline").json()
        dog = c.get("/api/layers/mixed4c?category=dog").json()
    assert feline["n_category"] == 0 and all(row["si"] is None for row in feline["units"])
    assert any(f"none of the run's {len(WNIDS)} images are in category feline" in w for w in feline["warnings"])
    assert not any("are in category" in w for w in dog["warnings"])


def test_a_centre_surround_unit_fails_the_exclusive_test_that_the_studys_count_passes(claims_of):
    """Its bottom 100 are its top 100: the study's in_bottom counts them, the exclusive test has nothing left."""
    body = claims_of("centre_surround")
    responses = _responses("centre_surround")
    assert (stats.si(responses[:, :, 1].astype(np.float64), IS_DOG) >= 0.7).sum() == SELECTIVE
    negative = _claim(body, "negative")
    assert negative["study_value"] == 1.0  # every selective unit: in_bottom = 100 >= base rate 33.3
    assert negative["value"] == 0.0 and negative["verdict"] == "does_not_hold"
    assert "overlap included: 100.0% reach the base rate" in negative["reason"]


def test_the_exclusive_counts_are_the_images_of_the_bottom_k_outside_the_top_k(tmp_path):
    """overlap, bottom_only and in_bottom_only on the layer's twin, against sets taken from the raw responses."""
    responses = _responses("two_sided")
    publish_mixed4c_run(tmp_path / "c.duckdb", responses, WNIDS, (builtin_category("dog"),))
    with TestClient(create_app(make_settings(tmp_path / "c.duckdb", tmp_path))) as c:
        body = c.get("/api/layers/mixed4c").json()
    k, ids = body["k"], np.arange(len(WNIDS))
    for u in body["units"]:
        top = set(np.lexsort((ids, -responses[:, u["unit"], 1]))[:k].tolist())
        bottom = set(np.lexsort((ids, responses[:, u["unit"], 2]))[:k].tolist())
        only = bottom - top
        assert (u["overlap"], u["bottom_only"], u["in_bottom_only"]) == (
            len(top & bottom), len(only), int(IS_DOG[sorted(only)].sum()))
    # Enriched: more dogs among the bottom-only images than in as many drawn from outside the top k, by the exact
    # hypergeometric tail (math.comb, not the product's scipy), Benjamini-Hochberg across the layer's units by hand.
    n, n_c = len(WNIDS), int(IS_DOG.sum())
    p = []
    for u in body["units"]:
        pool, pool_c, draws = n - k, n_c - u["in_top"], u["bottom_only"]
        tail = sum(comb(pool_c, i) * comb(pool - pool_c, draws - i) for i in range(u["in_bottom_only"], draws + 1))
        p.append(tail / comb(pool, draws))
    order = sorted(range(len(p)), key=lambda i: p[i])
    q, running = [0.0] * len(p), 1.0
    for rank in range(len(p), 0, -1):  # from the largest p down: q = min over j >= rank of p_(j) m / j
        running = min(running, p[order[rank - 1]] * len(p) / rank)
        q[order[rank - 1]] = running
    for u, p_u, q_u in zip(body["units"], p, q):
        assert u["p_bottom_only"] == pytest.approx(p_u, rel=1e-9, abs=1e-300)
        assert u["q_bottom_only"] == pytest.approx(q_u, rel=1e-9, abs=1e-300)
    for group, chosen in (("selective", True), ("rest", False)):
        enriched = sum(q_u < 0.05 for u, q_u in zip(body["units"], q) if u["selective"] == chosen)
        assert body["groups"][group]["with_bottom_only_enriched"] == enriched


def test_two_sided_is_not_specific_when_the_other_units_are_as_two_sided(claims_of):
    """Every unit has the dogs far below the rest: the selective units are two-sided, but no more than the rest."""
    two_sided = _claim(claims_of("everyone_negative"), "two_sided")
    assert two_sided["verdict"] == "holds_not_specific" and two_sided["value"] > 0.1



def test_the_classes_that_beat_the_dogs_are_ranked_and_named(tmp_path):
    """On 50 images a class every class is ranked: the car class, driven harder than every dog, beats the dogs'
    median class on the unit and class pages, and the claim names it."""
    responses = _responses("two_sided")
    publish_mixed4c_run(tmp_path / "c.duckdb", responses, WNIDS, (builtin_category("dog"),))
    with TestClient(create_app(make_settings(tmp_path / "c.duckdb", tmp_path))) as c:
        body = c.get("/api/layers/mixed4c/units/0/classes?stat=max").json()
        page = Page(c.get("/layers/mixed4c/units/0?si_stat=max").text)
        claim = _claim(c.get("/api/claims").json(), "other_classes")
    wnids = np.array(WNIDS)
    means = {w: float(responses[wnids == w, 0, 1].astype(np.float64).mean()) for w in DOGS + OTHERS}
    dog_median = float(np.median([means[w] for w in DOGS]))
    beaten = [w for w in sorted(OTHERS, key=lambda w: -means[w]) if means[w] > dog_median]
    assert beaten == [CAR]
    beats = body["beats_category_median"]
    assert beats["median"] == pytest.approx(dog_median) and [b["wnid"] for b in beats["classes"]] == beaten
    details = page.by_id("beats-category-median")
    assert details.one("summary").find_all("b")[0].text == "1"
    listing = details.text.removeprefix(details.one("summary").text).strip()  # "name (mean)"
    assert listing.rsplit(" (", 1)[0] == beats["classes"][0]["class_name"]
    assert beats["classes"][0]["class_name"] in claim["control"] and "0 classes of the run have fewer" in claim["control"]


def test_each_claim_gives_its_verdict_under_every_specification(claims_of):
    """robustness: 16 cells (top by max or mean, bottom by min or mean, SI on max or mean, threshold 0.65 or 0.7),
    robust only when all agree with the verdict asked for, and a cell is what /api/claims says for its parameters."""
    body = claims_of("two_sided")
    grid = {(pos, neg, si, t) for pos in ("max", "mean") for neg in ("min", "mean") for si in ("max", "mean")
            for t in (0.65, 0.7)}
    for claim in body["claims"]:
        cells = claim["robustness"]["cells"]
        assert {(c["pos_stat"], c["neg_stat"], c["si_stat"], c["threshold"]) for c in cells} == grid
        assert claim["robustness"]["robust"] == (claim["verdict"] != "cannot_tell"
                                                 and all(c["verdict"] == claim["verdict"] for c in cells))
        asked = next(c for c in cells if (c["pos_stat"], c["neg_stat"], c["si_stat"], c["threshold"]) ==
                     ("max", "min", "max", 0.7))
        assert asked["verdict"] == claim["verdict"] and asked["url"] == "/claims"
    spec = {"pos_stat": "mean", "neg_stat": "mean", "si_stat": "mean", "threshold": 0.65}
    there = claims_of("two_sided", "?pos_stat=mean&neg_stat=mean&si_stat=mean&threshold=0.65")
    for claim, other in zip(body["claims"], there["claims"]):
        (cell,) = [c for c in claim["robustness"]["cells"] if all(c[k] == v for k, v in spec.items())]
        assert cell["verdict"] == other["verdict"], claim["id"]
        assert cell["url"] == "/claims?pos_stat=mean&neg_stat=mean&si_stat=mean&threshold=0.65"
    # The page shows each claim's grid: 16 links, one per cell, marked with the cell's verdict.
    page = Page(body["_page"].text)
    for claim in body["claims"]:
        cells = page.by_id(f'grid-{claim["id"]}').find_all("td", cls="cell")
        assert [td.one("a").get("href") for td in cells] == [c["url"] for c in claim["robustness"]["cells"]]
        assert [td.classes[1] for td in cells] == [c["verdict"] for c in claim["robustness"]["cells"]]
    # Without intervention jobs, their two claims cannot tell in any cell: untested, not robust.
    for name in ("negative_stimulus", "important"):
        claim = _claim(body, name)
        assert {c["verdict"] for c in claim["robustness"]["cells"]} == {"cannot_tell"}
        assert claim["robustness"]["robust"] is False
        row = page.by_id(f"grid-{name}").parent
        assert row.one("span", cls="robust-no").text == "untested: 16 of 16 cannot tell"


def _bases_run(tmp_path, bases: tuple[np.ndarray, ...]) -> dict:
    publish_mixed4c_run(tmp_path / "c.duckdb", _responses("two_sided"), WNIDS, (builtin_category("dog"),), bases)
    with TestClient(create_app(make_settings(tmp_path / "c.duckdb", tmp_path))) as c:
        return _claim(c.get("/api/claims").json(), "axis_aligned")


def test_units_selective_more_often_than_random_directions_are_axis_aligned(tmp_path):
    """Two bases whose 40 directions carry no dog signal: 8 selective units against none of 80 directions, Fisher's
    one-sided p = C(40, 8) / C(120, 8) (every selective one a unit); the stored SI is the directions' own."""
    rng = np.random.default_rng(5)
    bases = tuple(rng.normal(0, 1, (len(WNIDS), UNITS, 3)).astype(np.float32) for _ in range(2))
    claim = _bases_run(tmp_path, bases)
    assert claim["verdict"] == "holds" and claim["value"] == SELECTIVE
    with duckdb.connect(str(tmp_path / "c.duckdb"), read_only=True) as con:
        stored = con.sql("SELECT basis, unit, si FROM basis_si WHERE category = 'dog' AND stat = 'min' "
                         "ORDER BY basis, unit").fetchall()
    expected = [stats.si(b[:, :, 2].astype(np.float64), IS_DOG) for b in bases]
    assert [(b, u) for b, u, _ in stored] == [(b, u) for b in range(2) for u in range(UNITS)]
    np.testing.assert_allclose([si for _, _, si in stored], np.concatenate(expected), rtol=1e-9)
    assert f"p = {comb(UNITS, SELECTIVE) / comb(3 * UNITS, SELECTIVE):.3g}" in claim["reason"]
    per_basis = [int((stats.si(b[:, :, 1].astype(np.float64), IS_DOG) >= 0.7).sum()) for b in bases]
    assert per_basis == [0, 0] and "of 40 directions: 0, 0 selective" in claim["control"]
    medians = np.median(np.concatenate([stats.si(b[:, :, 1].astype(np.float64), IS_DOG) for b in bases]))
    assert f"{medians:.3g} for the directions" in claim["control"]
    _assert_whole_test_worded_by_its_p(claim["control"])


def _assert_whole_test_worded_by_its_p(control: str) -> None:
    """The whole-distribution test reads "units higher" only when its p says so, else "units not higher"."""
    found = re.search(r"\((units (?:not )?higher), one-sided Mann–Whitney p = ([0-9.e-]+)\)", control)
    assert found is not None, control
    assert found[1] == ("units higher" if float(found[2]) < 0.05 else "units not higher"), control


def test_random_directions_as_selective_as_the_units_are_not_axis_aligned(tmp_path):
    """Each basis holds the units' own responses, shuffled over directions: as many selective directions per basis as
    selective units, so the units are not selective more often."""
    rng = np.random.default_rng(6)
    responses = _responses("two_sided")
    bases = tuple(responses[:, rng.permutation(UNITS)] for _ in range(2))
    claim = _bases_run(tmp_path, bases)
    assert claim["verdict"] == "does_not_hold"
    assert "8, 8 selective" in claim["control"] and "random directions are selective as often" in claim["reason"]
    assert "units not higher" in claim["control"]  # the same SIs, shuffled over directions
    _assert_whole_test_worded_by_its_p(claim["control"])


def test_a_count_reads_as_a_count_and_the_smallest_permutation_p_as_a_bound() -> None:
    from app.pages.claim_models import Claim
    from app.pages.claims import _p
    from app.pages.layer import NullStat

    def stat(p: float, valid: int = 1000) -> NullStat:
        return NullStat(name="selective", description="", observed=14, null_mean=2.0, null_p95=5.0, p=p, valid=valid)

    # No permutation reached the observed count: p is its floor 1 / 1001, which says only p < 1 / 1000.
    assert _p(stat(1 / 1001)) == "p < 0.001 (1,000 permutations)"
    assert _p(stat(2 / 1001)) == "p = 0.002"
    assert _p(stat(1 / 21, valid=20)) == "p < 0.05 (20 permutations)"
    claim = Claim(id="selective", claim="", test="", value=14, control="", verdict="holds", reason="",
                  evidence_url="/")
    assert claim.model_dump()["value"] == 14 and isinstance(claim.model_dump()["value"], int)
