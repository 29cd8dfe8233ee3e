"""Every statistic of the product, once: chance p-values, FDR, AUROC, SI, correlations, effect sizes.

numpy and scipy, no torch: the worker's publication and the server's pages compute with the same
functions, and the Python API returns what they return. scipy.stats does what it can
(Benjamini-Hochberg, ranks, Mann-Whitney, the exclusive test's hypergeometric tails); the hand-written
ones are those where a vectorised need was measured (the hypergeometric tail of a whole layer at once),
the per-unit forms scipy has not (SI) and those scipy lacks (Cliff's delta, cross-validated
R^2). Definitions follow unitscope/schema.py: SI min-max normalises each unit's responses over all images of the
run. The permutation nulls are in unitscope.nulls, the category's tails in unitscope.tails; the thresholds that turn
these numbers into verdicts in unitscope.claim_rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from unitscope.claim_rules import MIN_PAIRS, MIN_R2_IMAGES, R2_FOLDS, R2_SEED

# Working memory one chunk of permutations (or of AUROC columns) may take, beside the inputs.
CHUNK_BYTES = 128 * 2**20


def hypergeom_sf_array(x: npt.ArrayLike, k: int, n: int, n_c: int) -> np.ndarray:
    """P(X >= x) for each x, X the category images among k drawn without replacement from n, n_c in it.

    This is in_top's (or in_bottom's) upper-tail p-value under random labels, for every unit of a layer
    at once. Hand-written, not scipy.stats.hypergeom.sf: for 512 units at n = 60,000, k = 1000 scipy
    took 56 ms and this 0.26 ms, the same to 4e-13 (2026-12-03), and the claims page evaluates it for
    every specification of its grid. The pmf is computed once for the whole support, then indexed. Exact
    up to rounding: the log-pmf from the ratio of consecutive terms, normalised to sum to 1, then summed
    from the upper end with a cumulative log-sum-exp, so tails far below 1e-300 keep their
    relative accuracy (about 1e-12). Log-binomials from math.lgamma were 2e-10 off at n = 286,000
    (lgamma there is ~3e6, whose float64 spacing is 5e-10), hence the ratios. x need not be an
    integer (P(X >= x) = P(X >= ceil x)), e.g. a base rate. k > n is taken as k = n.
    """
    if not 0 <= n_c <= n or k < 0:
        raise ValueError(f"need 0 <= n_c <= n and k >= 0, got n={n}, n_c={n_c}, k={k}")
    k = min(k, n)
    lo, hi = max(0, k - (n - n_c)), min(k, n_c)  # the support of X
    x = np.ceil(np.asarray(x, dtype=np.float64))
    i = np.arange(lo, hi, dtype=np.float64)
    # pmf(i + 1) / pmf(i) = (n_c - i)(k - i) / ((i + 1)(n - n_c - k + i + 1))
    log_ratio = np.log((n_c - i) * (k - i)) - np.log((i + 1) * (n - n_c - k + i + 1))
    log_pmf = np.concatenate([[0.0], np.cumsum(log_ratio)])
    log_pmf -= np.logaddexp.reduce(log_pmf)
    log_tail = np.logaddexp.accumulate(log_pmf[::-1])[::-1]  # log P(X >= lo + j)
    inside = np.clip(x, lo, hi).astype(np.int64) - lo
    # Rounding can put a sum a few ulps above 1; a probability it stays.
    tail = np.minimum(np.exp(log_tail[inside]), 1.0)
    return np.where(x <= lo, 1.0, np.where(x > hi, 0.0, tail))


def hypergeom_sf(x: float, k: int, n: int, n_c: int) -> float:
    """P(X >= x) for one x; see hypergeom_sf_array."""
    return float(hypergeom_sf_array(x, k, n, n_c))


def bh_qvalues(p: npt.ArrayLike) -> np.ndarray:
    """Benjamini-Hochberg q-values (scipy.stats.false_discovery_control), in the order given; of a 2-D array, each
    column a family of its own.

    NaN p-values (tests that could not be run) stay NaN and do not count among the m tests.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim not in (1, 2):
        raise ValueError(f"p-values must be 1-D, or 2-D with a family per column, got {p.ndim}-D")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    q = np.full(p.shape, np.nan)
    finite = ~np.isnan(p)
    if p.ndim == 2 and not (finite == finite[:, :1]).all():
        for column in range(p.shape[1]):  # columns tested on different rows: one family at a time
            q[:, column] = bh_qvalues(p[:, column])
        return q
    rows = finite if p.ndim == 1 else finite[:, 0] if p.shape[1] else np.zeros(len(p), bool)
    if rows.any():
        # One call for every column: scipy's per-call checks cost more than a family of a thousand tests.
        q[rows] = sps.false_discovery_control(p[rows], method="bh", axis=0)
    return q


def _labels(labels: npt.ArrayLike, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype != np.bool_ or labels.shape != (n,):
        raise ValueError(f"labels must be a bool array of shape ({n},), got {labels.dtype} {labels.shape}")
    return labels


def _values(values: npt.ArrayLike, dtype: type | None = None) -> np.ndarray:
    values = np.asarray(values, dtype=dtype)
    # min and max propagate NaN and reach inf, without an (n, u) temporary.
    if values.ndim != 2 or values.size == 0 or not (np.isfinite(values.min()) and np.isfinite(values.max())):
        raise ValueError("values must be a finite (images, units) array")
    return values


def _chunk(bytes_per_item: int, total: int, budget: int) -> int:
    return max(1, min(total, budget // max(1, bytes_per_item)))


# Working bytes per value of sorted_runs and what its callers build on it (the order, the runs' bounds, a rank or
# count per value and their temporaries): the per-value cost that sizes their chunks of columns.
RUN_BYTES = 64


@dataclass
class SortedRuns:
    """Each column of an (n, c) block sorted (sorted_runs): three (c, n) arrays, and which columns hold ties."""

    order: np.ndarray  # the column's rows in ascending order of value
    lo: np.ndarray  # at each sorted position, the first position of its run of equal values
    hi: np.ndarray  # ... and one past its last
    tied: np.ndarray  # (c,) bool: the column has a run of two or more equal values
    _ranks: np.ndarray | None = field(default=None, repr=False)

    def ranks(self) -> np.ndarray:
        """scipy.stats.rankdata(block, axis=0): 1-based ranks, ties sharing their average; (n, c) float64, read-only.

        Computed once: publication asks for a block's ranks for AUROC and again for the labels."""
        if self._ranks is None:
            ranks = np.empty(self.order.shape)
            np.put_along_axis(ranks, self.order, (self.lo + self.hi + 1) / 2, axis=1)
            ranks.flags.writeable = False
            self._ranks = ranks.T
        return self._ranks


def column_runs(values: np.ndarray, runs: SortedRuns | None = None) -> Iterator[tuple[slice, np.ndarray, SortedRuns]]:
    """(columns, those columns of an (n, u) array, their sorted_runs), as many columns at a time as keep a call and
    its users near CHUNK_BYTES; given `runs`, the runs of every column (a caller that sorted once for several
    statistics), all columns at once."""
    if runs is not None:
        yield slice(0, values.shape[1]), values, runs
        return
    n, u = values.shape
    step = _chunk(RUN_BYTES * n, u, CHUNK_BYTES)
    for start in range(0, u, step):
        part = values[:, start:start + step]
        yield slice(start, start + part.shape[1]), part, sorted_runs(part)


def sorted_runs(block: np.ndarray) -> SortedRuns:
    """Each column of a finite (n, c) block sorted, with its runs of equal values.

    What is computed from the runs (average ranks, counts at or below a value) is the same for any order among
    equal values, so the sort need not be stable. Publication sorts a block once for every rank statistic of it
    (AUROC, Baek's tests, the labels).
    """
    t = np.ascontiguousarray(np.asarray(block).T)
    c, n = t.shape
    order = np.empty((c, n), dtype=np.int64)
    lo, hi = np.empty((c, n), dtype=np.int64), np.empty((c, n), dtype=np.int64)
    tied = np.zeros(c, dtype=bool)
    starts = np.ones(n, dtype=bool)  # a run of equal values starts here
    # Row by row: a row's temporaries stay in cache, where numpy's accumulate along the rows of the block was 5x slower.
    for j in range(c):
        order[j] = _radix_order(t[j]) if t.dtype == np.float32 else np.argsort(t[j])
        ordered = t[j, order[j]]
        np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
        first = np.flatnonzero(starts)
        tied[j] = first.size < n
        run = np.cumsum(starts) - 1
        np.take(first, run, out=lo[j])
        np.take(np.append(first[1:], n), run, out=hi[j])
    return SortedRuns(order, lo, hi, tied)


def _radix_order(row: np.ndarray) -> np.ndarray:
    """The ascending order of a finite float32 row: two stable passes of numpy's radix sort of 16-bit integers, on
    the bits mapped to unsigned keys in the floats' order (a negative float's bits inverted, a positive one's sign bit
    set; -0.0 just before +0.0, one run). 3x numpy's argsort at 1.28M values (bench/sort_speed.py)."""
    bits = row.view(np.uint32)
    key = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))
    low = np.argsort(key.astype(np.uint16), kind="stable")
    return low[np.argsort((key >> 16).astype(np.uint16)[low], kind="stable")]


def auroc(values: npt.ArrayLike, labels: npt.ArrayLike) -> np.ndarray:
    """Per unit, P(a random category image's response > a random other image's), ties counting 1/2.

    values: (n images, u units); labels: (n,) bool. 0.5 is no preference, 1 every category image
    above every other, 0 every one below. NaN for every unit when either group is empty.
    """
    return auroc_by_category(values, [labels])[0]


def auroc_by_category(values: npt.ArrayLike, labels: Sequence[npt.ArrayLike],
                      runs: SortedRuns | None = None) -> np.ndarray:
    """auroc() for each of C label arrays at once: (C, u). runs: sorted_runs(values), when the caller has them.

    Mann-Whitney U from average ranks (SortedRuns.ranks), in chunks of columns so memory stays
    near CHUNK_BYTES. The ranks do not depend on the labels: each chunk is ranked once for every
    category (the ranking is most of the cost: publication stores every category's AUROC at the
    price of one), and the rank sums of all categories are one matrix product.
    """
    values = _values(values)
    n, u = values.shape
    masks = [_labels(m, n) for m in labels]
    out = np.full((len(masks), u), np.nan)
    # (row of out, labels, category size) of each label set with both groups non-empty.
    live = [(i, m, int(m.sum())) for i, m in enumerate(masks) if 0 < m.sum() < n]
    if not live:
        return out
    rows = [row for row, _, _ in live]
    members = np.array([mask for _, mask, _ in live], dtype=np.float64)  # (C', n) 0/1
    n_c = members.sum(axis=1)[:, None]
    for columns, _, sorted_part in column_runs(values, runs):
        # Average ranks of each column (ties share theirs), then every category's rank sum in one product.
        rank_sum = members @ sorted_part.ranks()  # (C', columns)
        out[rows, columns] = (rank_sum - n_c * (n_c + 1) / 2) / (n_c * (n - n_c))
    return out



def exclusive_p(in_top: npt.ArrayLike, overlap: npt.ArrayLike, in_bottom_only: npt.ArrayLike, k: int, n: int,
                n_c: int) -> np.ndarray:
    """Per unit, P(X >= in_bottom_only): X the category images among bottom_only = min(k, n) - overlap images drawn
    without replacement from the n - min(k, n) images outside the unit's top k, n_c - in_top of them in the category
    (scipy.stats.hypergeom). Small when the images that inhibit the unit without exciting it are the category's more
    often than chance; 1 when none is left (bottom_only = 0)."""
    depth = min(k, n)
    pool, pool_c = n - depth, n_c - np.asarray(in_top, dtype=np.int64)
    draws = depth - np.asarray(overlap, dtype=np.int64)
    x = np.asarray(in_bottom_only, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # no image outside the top k (k >= n): nothing drawn, p = 1
        p = sps.hypergeom.sf(x - 1, pool, pool_c, draws)
    return np.where((draws <= 0) | (pool <= 0), 1.0, np.clip(np.nan_to_num(p, nan=1.0), 0.0, 1.0))


def _si_from_sums(cat_sum: np.ndarray, total: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  n_c: int, n: int) -> np.ndarray:
    """SI from each unit's category sum, total sum, min and max (unitscope/schema.py's formula)."""
    if n_c == 0 or n_c == n:
        return np.full(np.broadcast_shapes(cat_sum.shape, lo.shape), np.nan)
    # A_N is affine in A, so mean_C(A_N) = (mean_C(A) - min) / (max - min); the range cancels.
    cat = cat_sum / n_c - lo
    rest = (total - cat_sum) / (n - n_c) - lo
    den = cat + rest
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((hi > lo) & (den > 0), cat / den, np.nan)


def split_half_si(values: npt.ArrayLike, label_sets: Sequence[npt.ArrayLike], ids: npt.ArrayLike) -> np.ndarray:
    """si() over the images with an even id, then the odd ones, each half as if it were the whole run, for each
    label set: (C, 2, u). values (n, u), label sets and image ids (n,). NaN for a half without images. Ids follow the
    class folders: each half holds about half of every class."""
    values = _values(values)
    masks = [_labels(m, values.shape[0]) for m in label_sets]
    odd = (np.asarray(ids) % 2).astype(bool)
    # Each half of checked values is checked already: finite, and not empty where rows.any().
    halves = [_si_by_category(values[rows], [m[rows] for m in masks]) if rows.any()
              else np.full((len(masks), values.shape[1]), np.nan) for rows in (~odd, odd)]
    return np.stack(halves, axis=1)


def si(values: npt.ArrayLike, labels: npt.ArrayLike) -> np.ndarray:
    """The product's SI per unit: min-max over all n images, mean_C(A_N) / (mean_C(A_N) + mean_notC(A_N)).

    values: (n, u); labels: (n,) bool. NaN where a unit's response never varies or a group is
    empty (SQL's NULL). Sums in float64, as DuckDB's avg does.
    """
    return si_by_category(values, [labels])[0]


def si_by_category(values: npt.ArrayLike, label_sets: Sequence[npt.ArrayLike]) -> np.ndarray:
    """si() for each label set, (C, u): each unit's min, max and total are read once for all of them."""
    values = _values(values)
    return _si_by_category(values, [_labels(m, values.shape[0]) for m in label_sets])


def _si_by_category(values: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    """si_by_category of values and masks already checked (_values, _labels)."""
    lo = values.min(axis=0).astype(np.float64)
    hi = values.max(axis=0).astype(np.float64)
    total = values.sum(axis=0, dtype=np.float64)
    out = np.empty((len(masks), values.shape[1]))
    for row, labels in enumerate(masks):
        cat_sum = values.sum(axis=0, dtype=np.float64, where=labels[:, None])  # no copy of the rows
        out[row] = _si_from_sums(cat_sum, total, lo, hi, int(labels.sum()), values.shape[0])
    return out


def complete_pairs(x: Sequence[float | None], y: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs where both values are known, as two float64 arrays."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} against {len(y)}")
    kept = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    if not kept:
        return np.empty(0), np.empty(0)
    xs, ys = zip(*kept)
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else None


def pearson(x: Sequence[float | None], y: Sequence[float | None]) -> float | None:
    """Pearson's r over the complete pairs; None with fewer than MIN_PAIRS or a side that never varies."""
    a, b = complete_pairs(x, y)
    return _pearson(a, b) if len(a) >= MIN_PAIRS else None


def spearman(x: Sequence[float | None], y: Sequence[float | None]) -> float | None:
    """Spearman's rho over the complete pairs: Pearson's r of their average ranks (scipy.stats.rankdata)."""
    a, b = complete_pairs(x, y)
    return _pearson(sps.rankdata(a), sps.rankdata(b)) if len(a) >= MIN_PAIRS else None


def cliffs_delta(x: np.ndarray, y: np.ndarray) -> float | None:
    """(#(x_i > y_j) - #(x_i < y_j)) / (len(x) len(y)): +1 when every x exceeds every y; None if a group is empty."""
    if len(x) == 0 or len(y) == 0:
        return None
    ys = np.sort(np.asarray(y, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    below = np.searchsorted(ys, x, side="left")  # y values under each x
    above = len(ys) - np.searchsorted(ys, x, side="right")  # y values over each x
    return float((below.sum() - above.sum()) / (len(x) * len(ys)))


def mann_whitney_p(x: np.ndarray, y: np.ndarray, alternative: str = "two-sided") -> float | None:
    """Mann–Whitney U p-value (scipy.stats.mannwhitneyu, asymptotic, tie and continuity corrected); `alternative`
    "greater" tests x above y.

    The groups compared here hold tens to hundreds of images, where the normal approximation is close
    to the exact test. None if a group is empty; 1 when every value is equal (no evidence either way).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) == 0 or len(y) == 0:
        return None
    if np.ptp(np.concatenate([x, y])) == 0:
        return 1.0
    return float(sps.mannwhitneyu(x, y, alternative=alternative, method="asymptotic").pvalue)


def more_often_p(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float | None:
    """One-sided Fisher exact p that group a's hit rate is above group b's (scipy.stats.fisher_exact on
    [[hits_a, misses_a], [hits_b, misses_b]]); None if a group is empty."""
    if n_a == 0 or n_b == 0:
        return None
    table = [[hits_a, n_a - hits_a], [hits_b, n_b - hits_b]]
    return float(sps.fisher_exact(table, alternative="greater").pvalue)


def wilson_interval(hits: int, n: int, z: float = float(sps.norm.ppf(0.975))) -> tuple[float, float] | None:
    """The Wilson score interval of the share hits / n (95% by default); None without trials. Unlike
    share ± z·SE it stays inside [0, 1] and is wide at small n: 1 of 1 is 0.21 to 1, not 1 to 1."""
    if n == 0:
        return None
    share, z2 = hits / n, z * z
    center = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = z * np.sqrt(share * (1 - share) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, float(center - half)), min(1.0, float(center + half))


def r2_cv(x: np.ndarray, y: np.ndarray, folds: int = R2_FOLDS, seed: int = R2_SEED) -> float | None:
    """Cross-validated R² of y on the columns of x: ordinary least squares with an intercept on
    predictors standardised by each training fold, `folds` folds of a fixed random permutation.

    R² = 1 - Σ(y - ŷ)² / Σ(y - ȳ)², with ŷ each image's prediction by the model fitted without its
    fold: about 1 for an exact linear function, about 0 or below for noise. None below MIN_R2_IMAGES
    images or when y never varies.
    """
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    n = len(y)
    total = float(((y - y.mean()) ** 2).sum()) if n else 0.0
    if n < max(MIN_R2_IMAGES, folds) or total <= 0:
        return None
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    predicted = np.empty(n)
    for f in range(folds):
        train, test = fold != f, fold == f
        mean, std = x[train].mean(0), x[train].std(0)
        std[std == 0] = 1.0  # a constant predictor: left at 0, its coefficient does nothing

        def design(rows: np.ndarray) -> np.ndarray:
            return np.column_stack([np.ones(len(rows)), (rows - mean) / std])

        coef, *_ = np.linalg.lstsq(design(x[train]), y[train], rcond=None)
        predicted[test] = design(x[test]) @ coef
    return 1.0 - float(((y - predicted) ** 2).sum()) / total


def group_p(observed: float, null: Sequence[float]) -> float | None:
    """One-sided permutation p that `observed` is as low as the null's values or lower: (1 + count) / (1 + n).

    The +1s count the observed group among the draws (Phipson & Smyth 2010), so p is never 0."""
    if not len(null):
        return None
    return (1 + sum(v <= observed for v in null)) / (1 + len(null))
