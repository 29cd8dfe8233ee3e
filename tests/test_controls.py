"""unitscope.stats against hand-worked cases, brute-force references and the product's own SI SQL."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from unitscope import claim_rules, nulls, stats, tails


def test_hypergeom_tail_matches_a_case_worked_by_hand():
    # n = 10 images, 4 in the category, k = 3 drawn: P(X >= 2) = [C(4,2) C(6,1) + C(4,3) C(6,0)] / C(10,3)
    # = (6 * 6 + 4 * 1) / 120 = 40 / 120 = 1/3.
    assert stats.hypergeom_sf(2, 3, 10, 4) == pytest.approx(1 / 3, rel=1e-12)
    # P(X >= 3) = 4 / 120; P(X >= 1) = 1 - C(6,3) / 120 = 1 - 20/120.
    assert stats.hypergeom_sf(3, 3, 10, 4) == pytest.approx(4 / 120, rel=1e-12)
    assert stats.hypergeom_sf(1, 3, 10, 4) == pytest.approx(100 / 120, rel=1e-12)


def test_hypergeom_edges():
    # n = 10, n_c = 8, k = 5: at least 5 - 2 = 3 category images are always drawn, at most 5.
    assert stats.hypergeom_sf(3, 5, 10, 8) == 1.0
    assert stats.hypergeom_sf(0, 5, 10, 8) == 1.0
    assert stats.hypergeom_sf(-2, 5, 10, 8) == 1.0
    assert stats.hypergeom_sf(6, 5, 10, 8) == 0.0
    assert stats.hypergeom_sf(5, 5, 10, 8) == pytest.approx(math.comb(8, 5) / math.comb(10, 5), rel=1e-12)
    # k > n is k = n: every image is drawn, so X = n_c exactly.
    assert stats.hypergeom_sf(4, 15, 10, 4) == 1.0
    assert stats.hypergeom_sf(5, 15, 10, 4) == 0.0
    # A non-integer x, such as a base rate, is P(X >= ceil x).
    assert stats.hypergeom_sf(1.2, 3, 10, 4) == stats.hypergeom_sf(2, 3, 10, 4)
    with pytest.raises(ValueError):
        stats.hypergeom_sf(1, 3, 10, 11)


def test_hypergeom_agrees_with_brute_force_enumeration():
    n = 8
    for n_c in range(n + 1):
        category = set(range(n_c))
        for k in range(n + 1):
            drawn = [len(category.intersection(c)) for c in itertools.combinations(range(n), k)]
            xs = np.arange(-1, k + 3)
            got = stats.hypergeom_sf_array(xs, k, n, n_c)
            for x, p in zip(xs, got):
                exact = Fraction(sum(d >= x for d in drawn), len(drawn))
                assert p == pytest.approx(float(exact), rel=1e-12, abs=1e-15), (n_c, k, x)


def test_hypergeom_tails_at_the_study_scale_are_complementary():
    # P(X >= x) + P(X <= x - 1) = 1, the second as the upper tail of the k - X non-category images.
    n, n_c, k = 286_000, 157_300, 1000
    xs = np.arange(400, 700, 7)
    upper = stats.hypergeom_sf_array(xs, k, n, n_c)
    lower = stats.hypergeom_sf_array(k - xs + 1, k, n, n - n_c)
    np.testing.assert_allclose(upper + lower, 1.0, rtol=1e-12)
    assert np.all(np.diff(upper) <= 0) and upper[0] == 1.0 and upper[-1] < 1e-20
    # Drawing only category images: prod (n_c - i) / (n - i), about 1e-260, still exact in relative terms.
    exact = math.exp(math.fsum(math.log((n_c - i) / (n - i)) for i in range(k)))
    assert stats.hypergeom_sf(k, k, n, n_c) == pytest.approx(exact, rel=1e-10)


def test_hypergeom_tail_matches_exact_integer_arithmetic_at_a_middle_scale():
    n, n_c, k = 3000, 1100, 400
    for x in (120, 147, 180, 230):
        exact = Fraction(sum(math.comb(n_c, i) * math.comb(n - n_c, k - i) for i in range(x, k + 1)),
                         math.comb(n, k))
        assert stats.hypergeom_sf(x, k, n, n_c) == pytest.approx(float(exact), rel=1e-11)


def test_bh_qvalues_match_a_list_worked_by_hand():
    # m = 5 p-values. Sorted: 0.01 (rank 1), 0.03 (2), 0.04 (3), 0.20 (4), 0.90 (5).
    # p * m / rank: 0.01*5/1 = 0.05, 0.03*5/2 = 0.075, 0.04*5/3 = 0.0667, 0.20*5/4 = 0.25, 0.90*5/5 = 0.90.
    # Step-up minimum from the largest rank down: 0.90, 0.25, 0.0667, min(0.075, 0.0667) = 0.0667, 0.05.
    # Back in the given order [0.01, 0.04, 0.03, 0.20, 0.90] -> [0.05, 0.0667, 0.0667, 0.25, 0.90].
    q = stats.bh_qvalues([0.01, 0.04, 0.03, 0.20, 0.90])
    np.testing.assert_allclose(q, [0.05, 0.2 / 3, 0.2 / 3, 0.25, 0.90], rtol=1e-12)


def test_bh_qvalues_leave_nan_out_of_m_and_keep_ties_equal():
    q = stats.bh_qvalues([0.01, np.nan, 0.04, 0.03, 0.20, 0.90])
    assert np.isnan(q[1])
    np.testing.assert_allclose(np.delete(q, 1), [0.05, 0.2 / 3, 0.2 / 3, 0.25, 0.90], rtol=1e-12)
    # Two equal p of 0.5 and 0.6 among m = 3: 0.5*3/2 = 0.75 for both, 0.6*3/3 = 0.6 caps them.
    np.testing.assert_allclose(stats.bh_qvalues([0.5, 0.6, 0.5]), [0.6, 0.6, 0.6])
    assert np.all(stats.bh_qvalues(np.linspace(0.5, 1.0, 11)) <= 1.0)
    with pytest.raises(ValueError):
        stats.bh_qvalues([0.2, 1.5])


def test_bh_qvalues_of_a_matrix_treat_each_column_as_its_own_family():
    # Column 0 is the list worked above; column 1 the tie case; column 2 has its NaN on another row (row 4), so the
    # columns are not tested on the same rows.
    p = np.array([[0.01, 0.5, 0.3], [0.04, 0.6, 0.3], [0.03, 0.5, 0.3], [0.20, np.nan, 0.01], [0.90, np.nan, np.nan]])
    p[3:, 1] = [0.6, 0.6]  # column 1: 0.5, 0.6, 0.5, 0.6, 0.6 -> 0.5*5/2 = 1.25 capped by 0.6*5/5 = 0.6: all 0.6
    q = stats.bh_qvalues(p)
    np.testing.assert_allclose(q[:, 0], [0.05, 0.2 / 3, 0.2 / 3, 0.25, 0.90], rtol=1e-12)
    np.testing.assert_allclose(q[:, 1], [0.6] * 5, rtol=1e-12)
    # Column 2, m = 4: 0.01*4/1 = 0.04; the three 0.3s at ranks 2-4: 0.3*4/4 = 0.3 caps them all.
    np.testing.assert_allclose(q[:4, 2], [0.3, 0.3, 0.3, 0.04], rtol=1e-12)
    assert np.isnan(q[4, 2])


def test_bh_qvalues_of_a_matrix_match_a_step_up_written_here():
    rng = np.random.default_rng(11)
    p = rng.random((300, 40)) ** 3
    p[rng.random(300) < 0.1] = np.nan  # untested rows, the same in every column (labels' candidates)
    p[:5] = np.round(p[:5], 2)  # ties
    q = stats.bh_qvalues(p)
    for column in range(p.shape[1]):
        tested = np.flatnonzero(~np.isnan(p[:, column]))
        values = p[tested, column]
        order = np.argsort(values, kind="stable")
        m = len(values)
        stepped = np.minimum.accumulate((values[order] * m / np.arange(1, m + 1))[::-1])[::-1]
        expected = np.empty(m)
        expected[order] = np.minimum(stepped, 1.0)
        np.testing.assert_allclose(q[tested, column], expected, rtol=1e-14)
        assert np.isnan(np.delete(q[:, column], tested)).all()


def test_auroc_matches_a_pairwise_count_with_ties():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 4, size=(40, 6)).astype(np.float32)  # four levels: ties everywhere
    labels = rng.random(40) < 0.3
    got = stats.auroc(values, labels)
    for unit in range(values.shape[1]):
        cat, rest = values[labels, unit], values[~labels, unit]
        wins = (cat[:, None] > rest[None, :]).sum() + 0.5 * (cat[:, None] == rest[None, :]).sum()
        assert got[unit] == pytest.approx(wins / (cat.size * rest.size), abs=1e-12)


def test_auroc_extremes_and_empty_groups():
    labels = np.array([True, True, False, False, False])
    values = np.array([[5, 0, 1], [4, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 4]], dtype=np.float32)
    np.testing.assert_allclose(stats.auroc(values, labels), [1.0, 0.5, 0.0])
    assert np.isnan(stats.auroc(values, np.ones(5, bool))).all()


def test_si_matches_the_formula_worked_by_hand():
    # Unit 0: [0, 2, 4, 10] -> A_N [0, .2, .4, 1]; category (first two) mean .1, rest .7: SI = .1 / .8.
    # Unit 1 never varies: NaN. Unit 2: [1, 3, 1, 1] -> A_N [0, 1, 0, 0]: .5 / (.5 + 0) = 1.
    values = np.array([[0, 5, 1], [2, 5, 3], [4, 5, 1], [10, 5, 1]], dtype=np.float32)
    labels = np.array([True, True, False, False])
    got = stats.si(values, labels)
    assert got[0] == pytest.approx(0.125, abs=1e-12)
    assert np.isnan(got[1])
    assert got[2] == pytest.approx(1.0, abs=1e-12)
    assert np.isnan(stats.si(values, np.zeros(4, bool))).all()


def _bottom(values: np.ndarray, k: int) -> np.ndarray:
    """Each unit's k smallest rows, ties by the smaller row, as the product ranks them."""
    n = values.shape[0]
    return np.stack([np.lexsort((np.arange(n), values[:, unit]))[:k] for unit in range(values.shape[1])])


def _naive_si(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """SI by its definition, one unit at a time in float64: A_N = (A - min) / (max - min) over all images,
    SI = mean_C(A_N) / (mean_C(A_N) + mean_notC(A_N))."""
    out = []
    for column in values.T.astype(np.float64):
        norm = (column - column.min()) / (column.max() - column.min())
        c, rest = norm[labels].mean(), norm[~labels].mean()
        out.append(c / (c + rest))
    return np.array(out)


def _naive_statistics(values, bottom, labels, threshold):
    """The three statistics from SI by its definition and plain counting, one unit at a time."""
    n, k = len(labels), bottom.shape[1]
    si = _naive_si(values, labels)
    assert np.abs(si - threshold).min() > 1e-9  # no unit so close to the threshold that rounding decides it
    selective = si >= threshold
    in_bottom = np.array([labels[rows].sum() for rows in bottom])
    base_rate = k * labels.sum() / n
    gap = np.median(in_bottom[selective]) - np.median(in_bottom[~selective]) \
        if selective.any() and not selective.all() else math.nan
    return selective.sum(), (selective & (in_bottom >= base_rate)).sum(), gap


@pytest.fixture(scope="module")
def independent():
    """Responses with no relation to the labels: SI scatters around 0.5."""
    rng = np.random.default_rng(5)
    values = rng.random((300, 60), dtype=np.float32)
    labels = np.zeros(300, bool)
    labels[rng.choice(300, 40, replace=False)] = True
    return values, _bottom(values, 50), labels


def test_observed_statistics_equal_a_naive_count(independent):
    values, bottom, labels = independent
    result = nulls.permutation_null(values, bottom, labels, threshold=0.52, permutations=20)
    selective, negative, gap = _naive_statistics(values, bottom, labels, 0.52)
    assert 0 < selective < values.shape[1]  # both groups exist, so the gap is defined
    assert result.selective.observed == selective
    assert result.selective_negative.observed == negative
    assert result.median_gap.observed == gap
    assert result.base_rate == 50 * 40 / 300 and result.k == 50


def test_labels_independent_of_responses_give_no_small_p(independent):
    values, bottom, labels = independent
    result = nulls.permutation_null(values, bottom, labels, threshold=0.52, permutations=400, seed=1)
    for stat in (result.selective, result.selective_negative, result.median_gap):
        assert stat.p_value > 0.05
        assert stat.valid == 400 == stat.null.size
        assert stat.p_value == (1 + (stat.null >= stat.observed).sum()) / 401
        assert stat.null_mean == pytest.approx(stat.null.mean())
        assert stat.null_p95 == pytest.approx(np.percentile(stat.null, 95))
    # The null of `selective` is centred where the observed count is, not at zero.
    assert abs(result.selective.null_mean - result.selective.observed) < 3 * result.selective.null.std()


def test_labels_that_determine_the_responses_give_the_smallest_p():
    rng = np.random.default_rng(8)
    n, u, n_c, permutations = 200, 12, 30, 199
    labels = np.zeros(n, bool)
    labels[rng.choice(n, n_c, replace=False)] = True
    # Category images respond highest in every unit; in the even units 3 of them respond lowest too.
    values = rng.random((n, u), dtype=np.float32)
    values[labels] += 10
    values[np.flatnonzero(labels)[:3], ::2] = -1
    result = nulls.permutation_null(values, _bottom(values, 20), labels, threshold=0.7,
                                       permutations=permutations, seed=0)
    assert result.selective.observed == u
    assert result.selective.p_value == 1 / (permutations + 1)
    # The even units' bottom 20 hold 3 category images, the base rate 20 * 30 / 200; the odd units' none.
    assert result.selective_negative.observed == 6
    assert result.selective_negative.p_value == 1 / (permutations + 1)
    # No permutation makes every unit selective, so the gap is never defined.
    assert np.isnan(result.median_gap.observed) and np.isnan(result.median_gap.p_value)


def test_a_gap_with_an_empty_group_is_left_out():
    rng = np.random.default_rng(2)
    values = rng.random((50, 8), dtype=np.float32)
    labels = np.arange(50) < 10
    result = nulls.permutation_null(values, _bottom(values, 5), labels, threshold=0.0, permutations=30)
    gap = result.median_gap  # every unit is selective at threshold 0: no "rest" group
    assert gap.valid == 0 and np.isnan(gap.null).all() and np.isnan(gap.p_value) and np.isnan(gap.null_mean)
    assert result.selective.observed == 8 and result.selective.p_value == 1.0


def test_the_null_is_seeded_and_independent_of_chunking(independent, monkeypatch):
    values, bottom, labels = independent
    run = lambda seed: nulls.permutation_null(values, bottom, labels, threshold=0.52,  # noqa: E731
                                                 permutations=50, seed=seed)
    first = run(4)
    np.testing.assert_array_equal(first.selective_negative.null, run(4).selective_negative.null)
    assert not np.array_equal(first.selective.null, run(5).selective.null)
    monkeypatch.setattr(nulls, "CHUNK_BYTES", 1)  # one permutation per chunk
    chunked = run(4)
    for name in ("selective", "selective_negative", "median_gap"):
        np.testing.assert_array_equal(getattr(first, name).null, getattr(chunked, name).null)


def test_permutation_null_refuses_bad_input(independent):
    values, bottom, labels = independent
    with pytest.raises(ValueError):
        nulls.permutation_null(values, bottom[:, :0], labels, threshold=0.5)
    with pytest.raises(ValueError):
        nulls.permutation_null(values, bottom + 300, labels, threshold=0.5)
    with pytest.raises(ValueError):
        nulls.permutation_null(values, bottom, np.zeros(300, bool), threshold=0.5)
    bad = values.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError):
        nulls.permutation_null(bad, bottom, labels, threshold=0.5)


def test_beats_category_median_by_hand():
    # Class means, descending: b 10 (category), c 7, a 3 (category), e 1, d .5. The category's median
    # class is the median of a's 3 and b's 10, 6.5 (each class once, whatever its size): only c beats it.
    profile = [
        claim_rules.ClassRow("b", 6, 10.0, 10.0, True, False),
        claim_rules.ClassRow("c", 5, 7.0, 5.0, False, False),
        claim_rules.ClassRow("a", 9, 3.0, 2.0, True, False),
        claim_rules.ClassRow("e", 7, 1.0, 1.0, False, False),
        claim_rules.ClassRow("d", 5, 0.5, 0.5, False, False),
    ]
    assert claim_rules.category_median(profile) == 6.5
    assert claim_rules.beats_category_median(profile) == ["c"]
    # A class of fewer than FEW_IMAGES images is flagged and not ranked, on either side: a one-image "x" at 20
    # beats nothing, and a one-image category class at 9 leaves the category's median class at 6.5.
    flagged = [claim_rules.ClassRow("x", 1, 20.0, 20.0, False, True), *profile,
               claim_rules.ClassRow("y", 1, 9.0, 9.0, True, True)]
    assert claim_rules.category_median(flagged) == 6.5 and claim_rules.beats_category_median(flagged) == ["c"]
    profile = [row for row in profile if row.key != "e"]
    # An odd number of category classes: the middle one's mean, 7; nothing else is in it, so nothing beats it.
    odd = [row._replace(is_category=row.key != "d") for row in profile]
    assert claim_rules.category_median(odd) == 7.0 and claim_rules.beats_category_median(odd) == []
    # Equal to the median is not above it; no category class at all: no median, nothing beats it.
    tied = [row._replace(mean=6.5) if row.key == "c" else row for row in profile]
    assert claim_rules.beats_category_median(tied) == []
    none = [row._replace(is_category=False) for row in profile]
    assert claim_rules.category_median(none) is None and claim_rules.beats_category_median(none) == []


def test_default_k_keeps_top_and_bottom_apart():
    assert claim_rules.default_k(6308) == (1000, "k = 1000, the study's")
    assert claim_rules.default_k(6000)[0] == 1000
    k, reason = claim_rules.default_k(5999)
    assert k == 999 and "5,999" in reason and "6,000" in reason
    assert claim_rules.default_k(3)[0] == 1
    assert claim_rules.default_k(600, study_k=50)[0] == 50
    with pytest.raises(ValueError):
        claim_rules.default_k(0)


def test_overlap_warning_only_when_the_sets_must_share_images():
    assert claim_rules.overlap_warning(1000, 6308) is None
    assert claim_rules.overlap_warning(1000, 2000) is None  # exactly disjoint is still possible
    warning = claim_rules.overlap_warning(1001, 2000)
    assert warning is not None and "at least 2 images" in warning
    # k past the images ranks all 300 on both sides (not "at least 9,700 shared", which 300 images cannot hold)
    warning = claim_rules.overlap_warning(5000, 300)
    assert warning is not None and "are all of them" in warning and "9,700" not in warning
    assert "are all of them" in claim_rules.overlap_warning(300, 300)


def test_the_sparse_product_and_the_gathered_bottom_counts_agree(independent, monkeypatch):
    values, bottom, labels = independent
    run = lambda: nulls.permutation_null(values, bottom, labels, threshold=0.52, permutations=50, seed=3)  # noqa: E731
    monkeypatch.setattr(nulls, "SPARSE_BOTTOM_SHARE", 1e9)
    dense = run()
    monkeypatch.setattr(nulls, "SPARSE_BOTTOM_SHARE", 0)  # the gather of u * k labels instead
    gathered = run()
    for name in ("selective", "selective_negative", "median_gap"):
        np.testing.assert_array_equal(getattr(dense, name).null, getattr(gathered, name).null)
        assert getattr(dense, name).observed == getattr(gathered, name).observed


def test_group_gap_is_smallest_when_the_chosen_units_hold_the_highest_values():
    values = np.arange(40, dtype=float)
    chosen = values >= 35  # the five highest
    result = nulls.group_gap(values, chosen, permutations=200, seed=1)
    assert result.observed == 37.0 - 17.0  # medians 37 (35..39) and 17 (0..34)
    assert result.p_value == 1 / 201 and result.valid == 200


def test_group_gap_of_a_random_group_is_not_small():
    rng = np.random.default_rng(2)
    values = rng.normal(size=500)
    chosen = np.zeros(500, bool)
    chosen[rng.choice(500, 40, replace=False)] = True
    result = nulls.group_gap(values, chosen, permutations=500, seed=3)
    assert 0.05 < result.p_value < 0.95
    assert abs(result.null_mean) < 0.1


def test_auroc_by_category_is_the_pairwise_count_of_each_label_set():
    rng = np.random.default_rng(4)
    values = rng.integers(0, 5, size=(50, 7)).astype(np.float32)  # ties everywhere
    label_sets = [rng.random(50) < 0.3, rng.random(50) < 0.6, np.zeros(50, bool)]
    got = stats.auroc_by_category(values, label_sets)
    assert got.shape == (3, 7)
    for row, labels in zip(got[:2], label_sets):
        # Every (category, other) pair of images, a win 1 and a tie 1/2: no ranks.
        diff = values[labels][:, None, :] - values[~labels][None, :, :]
        np.testing.assert_allclose(row, ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(0, 1)), rtol=1e-12)
    assert np.isnan(got[2]).all()  # an empty category


def test_tail_shares_worked_by_hand():
    # The rest (0, 1, 2) has deciles 0.2 and 1.8; the category (4, 2, 0.1): one below 0.2, two above 1.8.
    values = np.array([[4.0], [0.0], [2.0], [2.0], [1.0], [0.1]], dtype=np.float32)
    labels = np.array([True, False, True, False, False, True])
    assert tails.tail_shares(values, labels, upper=False)[0] == pytest.approx(1 / 3)
    assert tails.tail_shares(values, labels, upper=True)[0] == pytest.approx(2 / 3)
    assert np.isnan(tails.tail_shares(values, np.ones(6, bool), upper=True)).all()


def test_the_rest_quantiles_from_the_sorted_order_are_numpys_to_the_bit():
    """tails.rest_quantiles against np.quantile (a partition of the rest, numpy's own lerp), over rests of 1 to 60
    images, ties, signed zeros, extremes and float64, and the tail shares both ways."""
    rng = np.random.default_rng(11)
    spread = np.array([0.0, -0.0, 1.0, 1.0, 3.4e38, -3.4e38, 1e-45, 2.5, 7.0, np.nextafter(np.float32(1), 2)],
                      dtype=np.float32)
    cases = 0
    for n in [*range(2, 40), 61, 200, 1001]:
        for dtype in (np.float32, np.float64):
            values = rng.standard_normal((n, 6)).astype(dtype) * 10
            values[:, 1] = np.round(values[:, 1])  # long runs of ties
            values[:, 2] = rng.choice(spread, n)  # extremes, signed zeros
            values[:, 3] = np.maximum(values[:, 3], 0)
            labels = rng.random(n) < rng.uniform(0.05, 0.95)
            if labels.all() or not labels.any():
                labels[0] = not labels[0]
            with np.errstate(over="ignore", invalid="ignore"):  # numpy's lerp overflows between the extremes
                want = [np.quantile(values[~labels], q, axis=0) for q in (claim_rules.TAIL, 1 - claim_rules.TAIL)]
                got = tails.rest_quantiles(values, labels, stats.sorted_runs(values),
                                           [claim_rules.TAIL, 1 - claim_rules.TAIL])
                np.testing.assert_array_equal(got, want)
                np.testing.assert_array_equal(tails.both_tail_shares(values, labels, stats.sorted_runs(values)),
                                              tails.both_tail_shares(values, labels))
            cases += 1
    assert cases == 2 * 41


def test_nulls_at_several_thresholds_are_each_thresholds_own(independent):
    values, bottom, labels = independent
    both = nulls.permutation_nulls(values, bottom, labels, thresholds=(0.52, 0.55), permutations=50, seed=2)
    for result, threshold in zip(both, (0.52, 0.55)):
        alone = nulls.permutation_null(values, bottom, labels, threshold=threshold, permutations=50, seed=2)
        assert result.threshold == threshold
        for name in nulls.NULL_STATISTICS:
            got, want = getattr(result, name), getattr(alone, name)
            np.testing.assert_array_equal(got.null, want.null)
            assert (got.observed, got.p_value, got.valid) == (want.observed, want.p_value, want.valid)
    assert both[0].selective.observed > both[1].selective.observed  # a higher threshold, fewer units


@pytest.mark.parametrize("image_block", [nulls.IMAGE_BLOCK, 48])  # all images at once; blocks of 48 and a last part
@pytest.mark.parametrize("sparse_share", [nulls.SPARSE_BOTTOM_SHARE, 0])  # in_bottom by the product; by the bits
def test_a_null_fed_in_chunks_equals_naive_counts_under_the_same_shuffles(independent, monkeypatch, image_block,
                                                                          sparse_share):
    """Chunks of units in any order, two bottom sets: each shuffle's statistics are the naive ones (drawn in one go)."""
    monkeypatch.setattr(nulls, "IMAGE_BLOCK", image_block)
    monkeypatch.setattr(nulls, "SPARSE_BOTTOM_SHARE", sparse_share)
    values, bottom, labels = independent
    assert labels.size % image_block and (image_block < labels.size) == (image_block == 48)
    permutations, seed, threshold = 40, 12, 0.52
    rows = np.random.default_rng(seed).permuted(np.broadcast_to(labels, (permutations, labels.size)).copy(), axis=1)
    halves = bottom[:, ::2]  # a second bottom set, sharing the shuffles and the SIs
    null = nulls.LayerNull([bottom, halves], nulls.Shuffles(labels, permutations, seed), thresholds=(threshold,))
    for first, last in ((41, 60), (0, 7), (7, 41)):  # uneven chunks, out of order
        null.add(first, values[:, first:last])
    for (result,), sets in zip(null.results(), (bottom, halves)):
        assert (result.selective.observed, result.selective_negative.observed, result.median_gap.observed) == \
            _naive_statistics(values, sets, labels, threshold)
        for r, shuffled in enumerate(rows):
            # The null's SIs come from float32 sums: no shuffle may leave a unit within their rounding of the threshold.
            assert np.abs(_naive_si(values, shuffled) - threshold).min() > 1e-5
            got = (result.selective.null[r], result.selective_negative.null[r], result.median_gap.null[r])
            np.testing.assert_array_equal(got, _naive_statistics(values, sets, shuffled, threshold))
    with pytest.raises(ValueError, match="never added"):
        nulls.LayerNull([bottom], nulls.Shuffles(labels, 3, seed), thresholds=(threshold,)).results()
