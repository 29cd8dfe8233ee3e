"""The field's selectivity measures and tuning shapes (unitscope.selectivity) against hand-worked values and scipy,
and on the layer page against the hand-made DB's raw responses."""

from __future__ import annotations

import statistics
from pathlib import Path
from urllib.parse import urlencode

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures import LAYERS, in_category, make_settings
from hand_run import publish_mixed4c_run
from scipy import stats as sps

from app.main import create_app
from app.params import ScoreParams
from unitscope import claim_rules, schema, selectivity, stats
from worker.categories import builtin_category


def test_d_prime_by_hand() -> None:
    # Category [1, 2, 3]: mean 2, sample variance 1. Rest [0, 0, 1, 1]: mean 0.5, variance 1/3.
    # d' = 1.5 / sqrt((1 + 1/3) / 2) = 1.5 / sqrt(2/3).
    values = np.array([[1.0], [2.0], [3.0], [0.0], [0.0], [1.0], [1.0]])
    labels = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)
    assert selectivity.d_primes(values, [labels])[0, 0] == pytest.approx(1.5 / np.sqrt(2 / 3))
    assert np.isnan(selectivity.d_primes(np.ones((7, 1)), [labels])[0, 0])  # no variance: undefined
    assert np.isnan(selectivity.d_primes(values, [np.eye(7, dtype=bool)[0]])[0, 0])  # one category image


def test_d_primes_of_several_categories_are_the_two_pass_formula_far_from_zero() -> None:
    """Each category's d′ from its masked copies and statistics' two-pass variances, on float32 responses far from
    zero (mean 1,000, SD 1 to 3, category offsets up to 8 SD): the centred sums of squares must not cancel."""
    rng = np.random.default_rng(7)
    n, u = 3_000, 4
    classes = rng.integers(0, 20, n)
    label_sets = [classes < 3, (classes >= 3) & (classes < 9), classes == 19, np.zeros(n, dtype=bool)]
    spread = rng.uniform(1, 3, u)
    values = (1_000 + rng.standard_normal((n, u)) * spread + 8 * spread * label_sets[0][:, None]
              - 2 * spread * label_sets[1][:, None]).astype(np.float32)
    found = selectivity.d_primes(values, label_sets)
    for row, labels in enumerate(label_sets[:3]):
        for unit in range(u):
            cat, rest = values[labels, unit].astype(float).tolist(), values[~labels, unit].astype(float).tolist()
            pooled = np.sqrt((statistics.variance(cat) + statistics.variance(rest)) / 2)
            assert found[row, unit] == pytest.approx((statistics.fmean(cat) - statistics.fmean(rest)) / pooled,
                                                     rel=1e-11)
    assert np.isnan(found[3]).all()  # an empty category
    assert found[0].min() > 7 and found[1].max() < -1  # the offsets, seen


def test_d_primes_where_the_sums_would_cancel_take_each_group_about_its_own_mean() -> None:
    """Two constant groups (0.3 and 1.0: no variance, so no d′, where sums about the column's mean leave a rounding
    residue that made it 1e8), and groups 10,000 SDs apart: each unit as statistics' two-pass formula gives it."""
    labels = np.arange(40) < 12
    rng = np.random.default_rng(3)
    values = np.column_stack([np.where(labels, 1.0, 0.3), rng.standard_normal(40) + 1e4 * labels])
    found = selectivity.d_primes(values, [labels])[0]
    assert np.isnan(found[0])
    cat, rest = values[labels, 1].tolist(), values[~labels, 1].tolist()
    pooled = np.sqrt((statistics.variance(cat) + statistics.variance(rest)) / 2)
    assert found[1] == pytest.approx((statistics.fmean(cat) - statistics.fmean(rest)) / pooled, rel=1e-12)


def test_csi_by_hand_ignores_small_classes_and_negative_responses() -> None:
    # Classes 0, 1, 2 of five images: post-ReLU means 4, 2 and 0 (its responses are all negative).
    # mu_max = 4, mu_rest = (2 + 0) / 2 = 1: CSI = 3 / 5. Class 3 has one image of 100: too few to count.
    values = np.array([4.0] * 5 + [1.0, 3.0, 2.0, 2.0, 2.0] + [-5.0] * 5 + [100.0])[:, None]
    classes = np.array([0] * 5 + [1] * 5 + [2] * 5 + [3])
    index, preferred = selectivity.csi(values, classes)
    assert (index[0], preferred[0]) == (pytest.approx(0.6), 0)
    silent, none = selectivity.csi(-np.ones((16, 1)), classes)
    assert np.isnan(silent[0]) and none[0] == -1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_sum_p_by_class_is_scipys_asymptotic_mann_whitney(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, units = 400, 5
    classes = rng.integers(0, 12, n)
    first, second = classes < 3, (classes >= 3) & (classes < 5)  # two categories: classes 0-2, and 3-4
    values = rng.standard_normal((n, units)) + first[:, None] * rng.uniform(0, 1.5, units)
    for labels, (codes, p) in zip((first, second), selectivity.rank_sum_p_by_class(values, [first, second], classes)):
        assert list(codes) == [c for c in range(12) if not labels[classes == c].any()]
        for row, code in enumerate(codes):
            expected = sps.mannwhitneyu(values[labels], values[classes == code], alternative="greater",
                                        method="asymptotic", use_continuity=True, axis=0).pvalue
            np.testing.assert_allclose(p[row], expected, rtol=1e-9)


def test_rank_sum_of_labels_that_split_classes_compares_each_class_s_other_images() -> None:
    """Labels drawn image by image, not class by class: a class's U counts only its unlabelled images, and it is
    tested when they are FEW_IMAGES or more; float32 responses with ties."""
    rng = np.random.default_rng(5)
    n = 600
    classes = rng.integers(0, 30, n)
    labels = rng.random(n) < 0.4
    values = np.round(rng.standard_normal((n, 3)) * 4).astype(np.float32) + labels[:, None]
    ((codes, p),) = selectivity.rank_sum_p_by_class(values, [labels], classes)
    other = [c for c in range(30) if (~labels & (classes == c)).sum() >= selectivity.FEW_IMAGES]
    assert list(codes) == other and labels[np.isin(classes, codes)].any()  # the tested classes hold labelled images
    n1 = labels.sum()
    for row, code in enumerate(codes):
        for unit in range(3):
            cat, rest = values[labels, unit], values[~labels & (classes == code), unit]
            u = (cat[:, None] > rest).sum() + 0.5 * (cat[:, None] == rest).sum()  # every pair, counted
            n2 = rest.size
            expected = sps.norm.sf((u - n1 * n2 / 2 - 0.5) / np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12))
            assert p[row, unit] == pytest.approx(expected, rel=1e-9)


def test_rank_sum_ties_count_one_half() -> None:
    """Integer responses, many ties: U is the pairwise count (a tie 1/2), p its normal approximation."""
    rng = np.random.default_rng(4)
    classes = rng.integers(0, 6, 300)
    labels = classes < 2
    values = rng.integers(0, 5, (300, 3)).astype(np.float32)
    ((codes, p),) = selectivity.rank_sum_p_by_class(values, [labels], classes)
    n1 = labels.sum()
    for row, code in enumerate(codes):
        other = values[classes == code]
        for unit in range(3):
            cat = values[labels, unit]
            wins = sum((x > y) + 0.5 * (x == y) for x in cat for y in other[:, unit])
            n2 = len(other)
            z = (wins - n1 * n2 / 2 - 0.5) / np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
            assert p[row, unit] == pytest.approx(sps.norm.sf(z), rel=1e-9)


def test_sorted_runs_give_scipys_average_ranks_and_exact_runs() -> None:
    """The unstable sort's runs of equal values: average ranks equal scipy.stats.rankdata's, ties included."""
    rng = np.random.default_rng(7)
    values = rng.standard_normal((500, 7)).astype(np.float32)
    values[:, 1] = np.maximum(values[:, 1], 0)  # half the column tied at the ReLU's floor
    values[:, 2] = np.round(values[:, 2])  # a few values, long runs
    values[:, 3] = 1.0  # one run
    values[::2, 4] = -0.0  # signed zeros are equal
    values[1::2, 4] = 0.0
    # both signs from the smallest subnormal to the largest float, and each one's neighbours
    extremes = np.array([np.finfo(np.float32).max, 1e-45, 1.0, 3.5, 1e30], dtype=np.float32)
    below = np.nextafter(extremes, np.float32(0))
    spread = np.concatenate([extremes, -extremes, below, -below, np.zeros(2, np.float32)])
    values[:, 5] = np.resize(spread, len(values))
    values[:, 6] = values[::-1, 5]
    runs = stats.sorted_runs(values)
    np.testing.assert_array_equal(runs.ranks(), sps.rankdata(values, axis=0))
    # a float64 block whose column of ones is split by 1e-9, a step float32 cannot tell: the same ranks as scipy's
    wide = values.astype(np.float64)
    wide[::2, 3] += 1e-9
    np.testing.assert_array_equal(stats.sorted_runs(wide).ranks(), sps.rankdata(wide, axis=0))
    for j in range(values.shape[1]):
        ordered = values[runs.order[j], j]
        assert (np.diff(ordered) >= 0).all()
        for i in (0, 137, 250, 499):  # a run is every position of an equal value, and no other
            equal = np.flatnonzero(ordered == ordered[i])
            assert (runs.lo[j, i], runs.hi[j, i]) == (equal[0], equal[-1] + 1)


def test_beats_every_class_needs_every_class_beaten() -> None:
    # 20 category images above 2 x 6 other images: p = 1.5e-4 < 0.001 against each class (U = 120 of 120).
    category, a, b = np.arange(100.0, 120.0), np.arange(6.0), np.arange(10.0, 16.0)
    labels = np.array([True] * 20 + [False] * 12)
    classes = np.array([0] * 20 + [1] * 6 + [2] * 6)
    # One class (a wolf) as strong as the category: not every class is beaten.
    wolf = np.arange(105.0, 111.0)
    values = np.stack([np.concatenate([category, a, b]), np.concatenate([category, a, wolf])], axis=1)
    np.testing.assert_array_equal(selectivity.beats_every_class(values, [labels], classes), [[1.0, 0.0]])
    # Four images per other class: none can be ranked, so the criterion cannot be tested.
    few = selectivity.beats_every_class(np.arange(28.0)[:, None], [np.arange(28) < 20],
                                        np.array([0] * 20 + [1] * 4 + [2] * 4))
    assert np.isnan(few[0, 0])


def test_sparseness_by_hand() -> None:
    rates = np.array([[1.0, 1.0, 2.0], [0.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    # One image of four: 1/n. All equal: 1. [2, 1, 0, 1]: mean 1, mean square 6/4: a = 2/3.
    np.testing.assert_allclose(selectivity.sparseness(rates), [0.25, 1.0, 2 / 3])
    assert np.isnan(selectivity.sparseness(np.zeros((3, 1)))[0])
    with pytest.raises(ValueError, match="non-negative"):
        selectivity.sparseness(-np.ones((2, 1)))


def test_kurtosis_is_scipys_excess_kurtosis() -> None:
    values = np.random.default_rng(3).exponential(size=(5000, 4)) * [1, 2, 3, 4]
    np.testing.assert_allclose(selectivity.kurtosis(values), sps.kurtosis(values, axis=0), rtol=1e-10)
    # An exponential distribution's excess kurtosis is 6; the sample's comes near it.
    assert selectivity.kurtosis(values).mean() == pytest.approx(6, abs=1.5)


def test_half_peak_share_by_hand() -> None:
    # Peak 10: above 5 are 10 and 6 (5 is not above): half of four images.
    assert selectivity.half_peak_share(np.array([[10.0], [6.0], [5.0], [1.0]]))[0] == 0.5


def test_tuning_shape_pre_relu_measures_from_the_units_floor() -> None:
    values = np.array([[-2.0], [0.0], [2.0]])
    shape = selectivity.tuning_shape(values)
    # Post-ReLU rates [0, 0, 2]: a = (2/3)^2 / (4/3) = 1/3. Pre-ReLU rates [0, 2, 4]: a = 4 / (20/3) = 0.6.
    assert (shape["sparseness"][0], shape["sparseness_pre"][0]) == (pytest.approx(1 / 3), pytest.approx(0.6))
    assert (shape["half_peak_share"][0], shape["half_peak_share_pre"][0]) == (pytest.approx(1 / 3), pytest.approx(1 / 3))


def test_reference_distributions_have_the_values_quoted() -> None:
    refs = {r.source.split(":")[0]: r.value for r in selectivity.IT_REFERENCE}
    assert refs["a half-normal distribution"] == pytest.approx(float(sps.halfnorm.stats(moments="k")))
    # Sparseness of a half-normal: E|X|^2 / E X^2 = 2/pi; of an exponential: 1 / 2 (mean^2 / second moment).
    x = np.abs(np.random.default_rng(0).standard_normal(400_000))[:, None]
    assert selectivity.sparseness(x)[0] == pytest.approx(refs["a half-normal distribution of rates"], abs=0.005)
    assert selectivity.sparseness(np.random.default_rng(0).exponential(size=(400_000, 1)))[0] == pytest.approx(0.5, abs=0.005)
    assert claim_rules.AUROC_SELECTIVE == pytest.approx(sps.norm.cdf(claim_rules.D_PRIME_SELECTIVE / np.sqrt(2)))


def _pure(values: list[float], labels: list[bool]) -> dict[str, float | None]:
    """d' and the tuning shape with the statistics module, one unit at a time."""
    cat = [v for v, c in zip(values, labels) if c]
    rest = [v for v, c in zip(values, labels) if not c]
    pooled = ((statistics.variance(cat) + statistics.variance(rest)) / 2) ** 0.5
    post = [max(v, 0.0) for v in values]
    pre = [v - min(values) for v in values]

    def a(r: list[float]) -> float | None:
        square = statistics.fmean(x * x for x in r)
        return statistics.fmean(r) ** 2 / square if square else None

    def share(r: list[float]) -> float | None:
        return sum(x > max(r) / 2 for x in r) / len(r) if max(r) > 0 else None

    return {"d_prime": (statistics.fmean(cat) - statistics.fmean(rest)) / pooled if pooled else None,
            "sparseness": a(post), "sparseness_pre": a(pre),
            "half_peak_share": share(post), "half_peak_share_pre": share(pre)}


@pytest.mark.parametrize(("layer", "params"), [("mixed4c", {}), ("conv1", {"category": "fish", "si_stat": "mean"})])
def test_the_layer_page_reports_each_units_measures_over_its_raw_responses(client: TestClient, layer: str,
                                                                           params: dict) -> None:
    body = client.get(f"/api/layers/{layer}?{urlencode(params)}").json()
    p = ScoreParams(**params)
    labels = in_category(p.category).tolist()
    column = ("mean", "max", "min").index(p.si_stat)
    for u in body["units"]:
        values = [float(np.float32(r[column])) for r in LAYERS[layer][u["unit"]]]
        for name, expected in _pure(values, labels).items():
            assert u[name] == (None if expected is None else pytest.approx(expected, rel=1e-9)), (u["unit"], name)
        # Every class of the hand-made DB has fewer than five images: nothing to rank classes by.
        assert (u["csi"], u["beats_every_class"]) == (None, None)
    table = {m["name"]: m for m in body["measures"]["measures"]}
    assert table["si"]["selective"] == body["selective"]
    assert table["beats_every_class"]["selective"] == 0


def test_publication_stores_what_the_page_would_compute(tmp_path: Path) -> None:
    """unit_measures, written at publication, against the same page on the same DB without it (computed)."""
    rng = np.random.default_rng(2)
    wnids = tuple(w for w in ("n02085620", "n02085782", "n01440764", "n01443537", "n01484850") for _ in range(40))
    values = rng.normal(0, 1, (len(wnids), 24, 3)).astype(np.float32)
    values[:80, :6, 1] += 3.0  # six dog units on max
    db = tmp_path / "m.duckdb"
    publish_mixed4c_run(db, values, wnids, (builtin_category("dog"),))
    urls = ["/api/layers/mixed4c", "/api/layers/mixed4c?si_stat=mean", "/layers/mixed4c?si_stat=min", "/api/layers/mixed4c.csv"]
    with TestClient(create_app(make_settings(db, tmp_path))) as c:
        stored = [c.get(url).content for url in urls]
    with duckdb.connect(str(db)) as con:
        assert con.execute(f"SELECT count(*) FROM {schema.UNIT_MEASURES}").fetchall()[0][0] == 24 * 3  # every stat of the one category
        con.execute(f"DELETE FROM {schema.UNIT_MEASURES}")
    with TestClient(create_app(make_settings(db, tmp_path))) as c:
        computed = [c.get(url).content for url in urls]
        body = c.get(urls[0]).json()
    assert computed == stored
    assert sum(u["beats_every_class"] is True for u in body["units"]) >= 5  # the dog units beat every class
