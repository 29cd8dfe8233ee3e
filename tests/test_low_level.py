"""Is a unit low-level? Cliff's delta, Mann–Whitney and r2_cv (unitscope.stats) against hand-worked cases,
image_stats through the store, publication and a real worker run, and the `low_level` fields of the API."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from fixtures import REPO, Page, make_settings
from hand_run import BEAGLE, TENCH, image, spec_for
from PIL import Image
from scipy import stats as scipy_stats

from app.main import create_app
from unitscope import schema
from unitscope.claim_rules import MIN_R2_IMAGES as MIN_IMAGES
from unitscope.claim_rules import R2_THRESHOLD
from unitscope.stats import cliffs_delta, mann_whitney_p, r2_cv
from worker.image_stats import image_stats
from worker.store import WorkerStore

# ---------------------------------------------------------------------------------------------
# The statistics, by hand


@pytest.mark.parametrize(("x", "y", "delta"), [
    ([1, 2, 3], [1, 2, 3], 0.0),
    ([4, 5], [1, 2, 3], 1.0),
    ([1, 2], [3, 4, 5], -1.0),
    ([1, 3, 5], [2, 4], 0.0),  # 3 pairs above, 3 below
    ([3, 4, 5], [1, 2, 4], 6 / 9),  # 7 above, 1 below, 1 tie (4 = 4)
])  # fmt: skip
def test_cliffs_delta_hand_worked(x: list[float], y: list[float], delta: float) -> None:
    assert cliffs_delta(np.array(x), np.array(y)) == pytest.approx(delta)


def test_cliffs_delta_and_p_are_none_for_an_empty_group() -> None:
    assert cliffs_delta(np.array([1.0]), np.array([])) is None
    assert mann_whitney_p(np.array([]), np.array([1.0])) is None


def test_mann_whitney_hand_worked_without_and_with_ties() -> None:
    # x below every y: U = 0, mean 4.5, variance 3*3/12 * 7 = 5.25, z = (4.5 - 0.5) / sqrt(5.25).
    assert mann_whitney_p(np.array([1, 2, 3]), np.array([4, 5, 6])) == pytest.approx(
        math.erfc(4 / math.sqrt(5.25) / math.sqrt(2))
    )
    # Ranks 1, 2.5 | 2.5, 4: U = 0.5, mean 2; one pair of ties: variance 4/12 * (5 - 6/12) = 1.5.
    assert mann_whitney_p(np.array([1, 2]), np.array([2, 3])) == pytest.approx(
        math.erfc(1 / math.sqrt(1.5) / math.sqrt(2))
    )
    assert mann_whitney_p(np.array([2.0, 2.0]), np.array([2.0])) == 1.0


def test_mann_whitney_agrees_with_scipy_on_tied_data() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 6, 40).astype(float), rng.integers(1, 7, 25).astype(float)
    expected = scipy_stats.mannwhitneyu(x, y, method="asymptotic", use_continuity=True).pvalue
    assert mann_whitney_p(x, y) == pytest.approx(expected, rel=1e-9)


def test_r2_cv_is_one_for_an_exact_linear_response_and_about_zero_or_below_for_noise() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)) * [1, 10, 0.1, 50, 3] + [100, 0, 0.5, 20, 0]  # scales like the real statistics
    assert r2_cv(x, x @ np.array([0.5, -0.2, 30.0, 0.01, 2.0]) + 7.0) == pytest.approx(1.0, abs=1e-9)
    noise = [r2_cv(x, rng.normal(size=300)) for _ in range(20)]
    assert max(noise) < 0.05 and np.median(noise) < 0.0


def test_r2_cv_is_none_without_enough_images_or_variance_and_survives_a_constant_predictor() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(MIN_IMAGES - 1, 5))
    assert r2_cv(x, rng.normal(size=MIN_IMAGES - 1)) is None
    x = rng.normal(size=(50, 5))
    assert r2_cv(x, np.full(50, 3.0)) is None
    x[:, 2] = 7.0  # e.g. saturation 0 on every grey image
    assert r2_cv(x, x[:, 0] * 2 + 1) == pytest.approx(1.0, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# A synthetic run through the store: a unit that is a linear function of the statistics, one that is noise

N_IMAGES = 80  # even ids are dogs, odd ids tench
K = 30


def synthetic_run(seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """wnids, image_stats [N, 5] and responses [N, 2 units, 3] of a run with known answers."""
    rng = np.random.default_rng(seed)
    wnids = [BEAGLE if i % 2 == 0 else TENCH for i in range(N_IMAGES)]
    dog = np.array([w == BEAGLE for w in wnids])
    stats = np.column_stack([
        rng.uniform(40, 200, N_IMAGES), rng.uniform(10, 80, N_IMAGES), rng.uniform(0, 1, N_IMAGES),
        rng.uniform(0, 120, N_IMAGES), rng.uniform(0, 0.3, N_IMAGES),
    ]).astype(np.float32)  # fmt: skip
    linear = stats.astype(np.float64) @ np.array([0.02, -0.05, 3.0, 0.01, 10.0])
    responses = np.zeros((N_IMAGES, 2, 3), dtype=np.float32)
    responses[:, 0, 1] = linear + 20 * dog  # max: dogs far above the rest, linear in the stats within
    responses[:, 1, 1] = rng.normal(size=N_IMAGES) + 20 * dog  # max: noise within the category
    responses[:, :, 2] = -responses[:, :, 1]  # min: the same ordering, reversed
    responses[:, :, 0] = 0.5 * (responses[:, :, 1] + responses[:, :, 2])
    return wnids, stats, responses


@pytest.fixture(scope="module")
def synthetic_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs of synthetic_run (seeds 0 and 1) published to one DB, each in two batches."""
    db = tmp_path_factory.mktemp("low-level") / "synthetic.duckdb"
    for seed in (0, 1):
        wnids, stats, responses = synthetic_run(seed)
        spec = spec_for(tuple(f"{w}/{i}.JPEG" for i, w in enumerate(wnids)))
        with WorkerStore.open(db) as store:
            store.begin(spec)
            half = N_IMAGES // 2
            for part in (slice(half, None), slice(0, half)):  # the later images first, as batches may arrive
                ids = range(N_IMAGES)[part]
                store.write_batch([image(i, wnids[i]) for i in ids], [], {"conv1": responses[part]}, stats[part])
            store.publish(ranked_k=K)
    return db


def test_image_stats_are_published_with_every_run(synthetic_db: Path) -> None:
    with duckdb.connect(str(synthetic_db), read_only=True) as con:
        for run_id, seed in ((1, 0), (2, 1)):
            rows = con.execute(
                f"SELECT image_id, {', '.join(schema.IMAGE_STAT_COLUMNS)} FROM {schema.IMAGE_STATS} "
                "WHERE run_id = ? ORDER BY image_id", [run_id]
            ).fetchall()
            assert [r[0] for r in rows] == list(range(N_IMAGES))
            np.testing.assert_array_equal(np.array([r[1:] for r in rows], dtype=np.float32), synthetic_run(seed)[1])


@pytest.fixture(scope="module")
def synthetic_client(synthetic_db: Path, tmp_path_factory: pytest.TempPathFactory):
    with TestClient(create_app(make_settings(synthetic_db, tmp_path_factory.mktemp("thumbs")))) as c:
        yield c


def brute_force_groups(responses: np.ndarray, unit: int, dog: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dog images among the unit's top K by max and bottom K by min (ties by image id), as masks over dogs."""
    ids = np.arange(N_IMAGES)
    top = sorted(ids, key=lambda i: (-responses[i, unit, 1], i))[:K]
    bottom = sorted(ids, key=lambda i: (responses[i, unit, 2], i))[:K]
    dogs = ids[dog]
    return np.isin(dogs, top), np.isin(dogs, bottom)


@pytest.mark.parametrize("unit", [0, 1])
def test_the_unit_twin_compares_its_top_and_bottom_category_images(synthetic_client: TestClient, unit: int) -> None:
    body = synthetic_client.get(f"/api/layers/conv1/units/{unit}?run=1&k={K}").json()
    ll = body["low_level"]
    wnids, stats, responses = synthetic_run(0)
    dog = np.array([w == BEAGLE for w in wnids])
    in_top, in_bottom = brute_force_groups(responses, unit, dog)
    dog_stats = stats[dog].astype(np.float64)
    assert (ll["images"], ll["positive"], ll["negative"]) == (dog.sum(), in_top.sum(), in_bottom.sum())
    assert [s["name"] for s in ll["stats"]] == list(schema.IMAGE_STAT_COLUMNS)
    for i, s in enumerate(ll["stats"]):
        pos, neg = dog_stats[in_top, i], dog_stats[in_bottom, i]
        assert s["median_positive"] == pytest.approx(np.median(pos))
        assert s["median_negative"] == pytest.approx(np.median(neg))
        signs = np.sign(pos[:, None] - neg[None, :])  # every pair, by brute force
        assert s["effect_size"] == pytest.approx(signs.mean())
        assert s["p"] == pytest.approx(scipy_stats.mannwhitneyu(pos, neg, method="asymptotic").pvalue, rel=1e-6)
        assert s["positive"]["n"] == len(pos) and s["positive"]["max"] == pytest.approx(pos.max())
    if unit == 0:  # an exact linear function of the statistics (in float32) within the category
        assert ll["r2_cv"] == pytest.approx(1.0, abs=1e-6)
    else:
        assert ll["r2_cv"] < 0.2


def test_the_layer_twin_gives_r2_cv_over_its_selective_units(synthetic_client: TestClient) -> None:
    body = synthetic_client.get(f"/api/layers/conv1?run=1&k={K}").json()
    selective = [u["unit"] for u in body["units"] if u["selective"]]
    ll = body["low_level"]
    assert ll["units"] == selective == [0, 1]
    r2 = {u: synthetic_client.get(f"/api/layers/conv1/units/{u}?run=1&k={K}").json()["low_level"]["r2_cv"]
          for u in selective}  # fmt: skip
    assert ll["values"] == pytest.approx([r2[0], r2[1]])
    assert ll["r2_cv_median"] == pytest.approx(np.median(ll["values"]))
    assert ll["r2_cv_p90"] == pytest.approx(np.quantile(ll["values"], 0.9))
    assert ll["threshold"] == R2_THRESHOLD and ll["verdict"] is (ll["r2_cv_median"] < R2_THRESHOLD) is False
    # Above every unit's SI: no selective unit, no verdict.
    none = synthetic_client.get("/api/layers/conv1?run=1&threshold=1").json()["low_level"]
    assert none["units"] == [] and none["verdict"] is None


def test_pages_show_the_low_level_section(synthetic_client: TestClient) -> None:
    unit = Page(synthetic_client.get(f"/layers/conv1/units/0?run=1&k={K}").text)
    section = unit.one("section", cls="low-level")
    assert section.by_id("low-level").get("data-figure") == "low-level-data" and "low-level-data" in unit.figures
    section.by_id("low-level-table")
    assert "hf_energy" in [row[0] for row in unit.rows["low-level-table"][1:]]
    layer = Page(synthetic_client.get(f"/layers/conv1?run=1&k={K}").text)
    section = layer.one("section", cls="low-level")
    assert section.by_id("low-level").get("data-figure") == "low-level-data" and "low-level-data" in layer.figures
    assert section.one("p", cls="summary").find_all("b")[-1].text == "does not hold"  # the verdict


def test_a_run_without_image_stats_has_null_low_level(client: TestClient) -> None:
    assert client.get("/api/layers/mixed4c/units/0").json()["low_level"] is None
    assert client.get("/api/layers/mixed4c").json()["low_level"] is None
    section = Page(client.get("/layers/mixed4c/units/0").text).one("section", cls="low-level")
    assert "no image statistics" in section.one("p", cls="note").text and not section.find_all("table")


# ---------------------------------------------------------------------------------------------
# A real worker run


def test_a_worker_run_writes_and_publishes_the_statistics_of_what_the_network_saw(
    tmp_path: Path, imagenet_sample: Path, bvlc_weights: Path
) -> None:
    db = tmp_path / "run.duckdb"
    cmd = [sys.executable, "-m", "worker", "run", "--images", str(imagenet_sample), "--db", str(db),
           "--weights", str(bvlc_weights), "--layers", "conv1", "--limit", "6", "--batch-size", "4",
           "--workers", "0", "--device", "cpu"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            f"SELECT i.path, {', '.join('s.' + c for c in schema.IMAGE_STAT_COLUMNS)} FROM {schema.IMAGES} i "
            f"JOIN {schema.IMAGE_STATS} s USING (run_id, image_id) ORDER BY image_id"
        ).fetchall()
        assert len(rows) == con.execute(f"SELECT count(*) FROM {schema.IMAGES}").fetchone()[0] == 6
    from worker.models import get_model

    model = get_model("bvlc-googlenet", weights=None)  # the transform only: weights play no part
    pixels = torch.stack([model.transform(Image.open(imagenet_sample / path).convert("RGB")) for path, *_ in rows])
    expected = image_stats(model.to_rgb255(pixels)).numpy()
    np.testing.assert_allclose(np.array([r[1:] for r in rows], dtype=np.float32), expected, rtol=1e-5, atol=1e-5)


def test_the_unit_twin_uses_the_k_in_use_when_none_is_given(synthetic_client: TestClient) -> None:
    # No k: the page's default, N_IMAGES // 6; the groups are that k's top and bottom, not every image.
    body = synthetic_client.get("/api/layers/conv1/units/1?run=1").json()
    k = body["k"]
    assert (k, body["k_source"]) == (N_IMAGES // 6, "default")
    given = synthetic_client.get(f"/api/layers/conv1/units/1?run=1&k={k}").json()
    assert body["low_level"] == given["low_level"]
    assert body["low_level"]["positive"] + body["low_level"]["negative"] <= 2 * k < body["low_level"]["images"] * 2
