"""/claims: each claim's verdict on runs built so that the answer is known, and its numbers recomputed here."""

from __future__ import annotations

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
    assert [c["id"] for c in body["claims"]] == ["selective", "negative", "two_sided", "other_classes", "low_level"]
    for c in body["claims"]:
        assert {"id", "claim", "test", "value", "control", "verdict", "evidence_url"} <= c.keys()
        assert c["evidence_url"].startswith("/layers/mixed4c")
    assert body["permutations"] == 1000 and body["warnings"] == []


def test_two_sided_selective_units_make_every_claim_hold(claims_of):
    body = claims_of("two_sided")
    verdicts = {c["id"]: c["verdict"] for c in body["claims"]}
    assert verdicts == {"selective": "holds", "negative": "holds", "two_sided": "holds", "other_classes": "holds",
                        "low_level": "cannot_tell"}  # a run written without image_stats
    assert "no image_stats" in _claim(body, "low_level")["reason"]
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


def test_an_overlapping_k_cannot_tell(claims_of):
    body = claims_of("two_sided", "?k=400")
    assert body["warnings"] and _claim(body, "negative")["verdict"] == "cannot_tell"
    assert _claim(body, "selective")["verdict"] == "cannot_tell"


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
