"""Controls for the study's claims: exact and permutation tests, AUROC, the class-profile rule, a safe k.

numpy and the standard library only (no torch, no scipy): the server computes with it, and publication
stores its results for the default parameters (worker.derived). Definitions
follow worker/schema.py: SI min-max normalises each unit's responses over all images of the run;
a unit's top k are its largest responses, its bottom k its smallest, ties to the smaller image id.
Callers pass rankings as row indices into the value arrays, in the product's order.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

# Working memory one chunk of permutations (or of AUROC columns) may take, beside the inputs.
CHUNK_BYTES = 128 * 2**20
DENSE_BOTTOM_BYTES = 64 * 2**20  # the bottom sets as an (n, u) float32 matrix up to this size (n = 32,768 at u = 512)


def hypergeom_sf_array(x: npt.ArrayLike, k: int, n: int, n_c: int) -> np.ndarray:
    """P(X >= x) for each x, X the category images among k drawn without replacement from n, n_c in it.

    This is in_top's (or in_bottom's) upper-tail p-value under random labels. Exact up to
    rounding: the log-pmf from the ratio of consecutive terms, normalised to sum to 1, then summed
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
    """Benjamini-Hochberg q-values (step-up, monotone in p), in the order given.

    NaN p-values (tests that could not be run) stay NaN and do not count among the m tests.
    No cap at 1 is needed: the largest p's q is p itself and every other q is a minimum with it.
    """
    p = np.asarray(p, dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    q = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum.accumulate(scaled[::-1])[::-1]
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


def auroc(values: npt.ArrayLike, labels: npt.ArrayLike) -> np.ndarray:
    """Per unit, P(a random category image's response > a random other image's), ties counting 1/2.

    values: (n images, u units); labels: (n,) bool. 0.5 is no preference, 1 every category image
    above every other, 0 every one below. NaN for every unit when either group is empty.
    """
    return auroc_by_category(values, [labels])[0]


def auroc_by_category(values: npt.ArrayLike, labels: Sequence[npt.ArrayLike]) -> np.ndarray:
    """auroc() for each of C label arrays at once: (C, u).

    Computed from midranks (Mann-Whitney U), in chunks of columns so memory stays near CHUNK_BYTES.
    The midranks do not depend on the labels: each chunk is sorted once for every category (a
    sort is most of the cost: publication stores every category's AUROC at the price of one).
    """
    values = _values(values)
    n, u = values.shape
    masks = [_labels(m, n) for m in labels]
    out = np.full((len(masks), u), np.nan)
    # (row of out, labels, category size) of each label set with both groups non-empty.
    live = [(i, m, int(m.sum())) for i, m in enumerate(masks) if 0 < m.sum() < n]
    if not live:
        return out
    step = _chunk(48 * n, u, CHUNK_BYTES)
    idx = np.arange(n)[:, None]
    for start in range(0, u, step):
        block = values[:, start:start + step]
        # Not a stable sort: ties share one midrank, so their order changes no term of the rank sum, and
        # numpy's default (SIMD) argsort was 7x faster (0.15 against 1.05 s for 286,000 x 8 float32).
        order = np.argsort(block, axis=0)
        ranked = np.take_along_axis(block, order, axis=0)  # each column ascending
        differs = ranked[1:] != ranked[:-1]
        edge = np.ones_like(differs[:1])
        # Each position's run of equal values: where it starts and where it ends.
        first = np.maximum.accumulate(np.where(np.vstack([edge, differs]), idx, 0), axis=0)
        last = np.minimum.accumulate(np.where(np.vstack([differs, edge]), idx, n - 1)[::-1], axis=0)[::-1]
        midrank = (first + last) / 2 + 1  # 1-based rank shared by a run of ties
        for row, mask, n_c in live:
            rank_sum = (midrank * mask[order]).sum(axis=0)
            out[row, start:start + step] = (rank_sum - n_c * (n_c + 1) / 2) / (n_c * (n - n_c))
    return out


TAIL = 0.10  # the rest's lower and upper deciles bound "far below" and "far above" (see README, claims)


def tail_shares(values: npt.ArrayLike, labels: npt.ArrayLike, *, upper: bool) -> np.ndarray:
    """Per unit, the share of the category's images beyond the rest's TAIL quantile: (u,).

    upper: above the rest's upper decile, else below its lower decile. values: (n, u); labels:
    (n,) bool. NaN for every unit when either group is empty.
    """
    values = _values(values)
    labels = _labels(labels, values.shape[0])
    if labels.all() or not labels.any():
        return np.full(values.shape[1], np.nan)
    rest, category = values[~labels], values[labels]
    if upper:
        return (category > np.quantile(rest, 1 - TAIL, axis=0)).mean(axis=0)
    return (category < np.quantile(rest, TAIL, axis=0)).mean(axis=0)


def _si_from_sums(cat_sum: np.ndarray, total: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  n_c: int, n: int) -> np.ndarray:
    """SI from each unit's category sum, total sum, min and max (worker/schema.py's formula)."""
    if n_c == 0 or n_c == n:
        return np.full(np.broadcast_shapes(cat_sum.shape, lo.shape), np.nan)
    # A_N is affine in A, so mean_C(A_N) = (mean_C(A) - min) / (max - min); the range cancels.
    cat = cat_sum / n_c - lo
    rest = (total - cat_sum) / (n - n_c) - lo
    den = cat + rest
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((hi > lo) & (den > 0), cat / den, np.nan)


def si(values: npt.ArrayLike, labels: npt.ArrayLike) -> np.ndarray:
    """The product's SI per unit: min-max over all n images, mean_C(A_N) / (mean_C(A_N) + mean_notC(A_N)).

    values: (n, u); labels: (n,) bool. NaN where a unit's response never varies or a group is
    empty (SQL's NULL). Sums in float64, as DuckDB's avg does.
    """
    values = _values(values)
    labels = _labels(labels, values.shape[0])
    lo = values.min(axis=0).astype(np.float64)
    hi = values.max(axis=0).astype(np.float64)
    total = values.sum(axis=0, dtype=np.float64)
    cat_sum = values.sum(axis=0, dtype=np.float64, where=labels[:, None])  # no copy of the rows
    return _si_from_sums(cat_sum, total, lo, hi, int(labels.sum()), values.shape[0])


@dataclass(frozen=True)
class NullStatistic:
    """One layer-level statistic: its observed value against its label-permutation null."""

    observed: float
    null: np.ndarray  # (P,) the statistic under each permutation; NaN where undefined
    valid: int  # permutations where it is defined (P for the counts), the p-value's denominator - 1
    p_value: float  # (1 + #{null >= observed}) / (valid + 1); NaN if observed is NaN or valid == 0
    null_mean: float
    null_p95: float  # numpy's default (linear) 95th percentile of the defined null values


NULL_STATISTICS = ("selective", "selective_negative", "median_gap")  # NullResult's statistics, in order


@dataclass(frozen=True)
class NullResult:
    """The label-permutation null of a layer's selectivity claims (see permutation_null)."""

    selective: NullStatistic
    selective_negative: NullStatistic
    median_gap: NullStatistic
    threshold: float
    k: int
    base_rate: float
    permutations: int
    seed: int


def _summarise(observed: float, null: np.ndarray) -> NullStatistic:
    defined = null[~np.isnan(null)]
    valid = defined.size
    p = (1 + int((defined >= observed).sum())) / (valid + 1) if valid and not math.isnan(observed) else math.nan
    return NullStatistic(
        observed=observed,
        null=null,
        valid=valid,
        p_value=p,
        null_mean=float(defined.mean()) if valid else math.nan,
        null_p95=float(np.percentile(defined, 95)) if valid else math.nan,
    )


def _masked_median(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median of each row's masked entries; NaN for a row with none."""
    ordered = np.sort(np.where(mask, x, np.inf), axis=1)  # masked-out entries sort last
    m = mask.sum(axis=1)
    lower = np.take_along_axis(ordered, np.maximum((m - 1) // 2, 0)[:, None], axis=1)[:, 0]
    upper = np.take_along_axis(ordered, (m // 2)[:, None], axis=1)[:, 0]
    return np.where(m > 0, (lower + upper) / 2, np.nan)


@dataclass(frozen=True)
class _Layer:
    """What the statistics need that does not depend on the labels."""

    values: np.ndarray  # (n, u) float32
    total: np.ndarray  # (u,) float64
    lo: np.ndarray
    hi: np.ndarray
    bottom: np.ndarray  # (u * k,) flattened row indices
    n_c: int
    base_rate: float
    # (n, u) float32 0/1 membership of the bottom sets, when it fits in DENSE_BOTTOM_BYTES: in_bottom
    # is then one matrix product instead of a gather of u * k labels per permutation (about 5x faster
    # at n = 6,308, u = 512, k = 1000: the gather took 2.1 of 2.8 s).
    bottom_matrix: np.ndarray | None = None

    def si(self, rows: np.ndarray) -> np.ndarray:
        """SI of every unit under each of R label rows (R, n) bool, from float32 category sums: (R, u)."""
        # (values.T @ rows.T).T is the same R x u product; in this orientation OpenBLAS ran it 9x
        # faster (34 against 4 GFLOPS for R = 100, n = 286,000, u = 512).
        cat_sum = (self.values.T @ rows.astype(np.float32).T).T
        return _si_from_sums(cat_sum.astype(np.float64), self.total, self.lo, self.hi, self.n_c, len(self.values))

    def in_bottom(self, rows: np.ndarray, units: int) -> np.ndarray:
        """Category images among each unit's bottom set under R label rows: (R, u) integers."""
        if self.bottom_matrix is not None:
            # Exact: sums of at most k ones in float32.
            return np.rint((self.bottom_matrix.T @ rows.astype(np.float32).T).T).astype(np.int64)
        gathered = np.take(rows, self.bottom, axis=1).reshape(len(rows), units, -1)  # R x u x k
        return np.count_nonzero(gathered, axis=2)

    def statistics(self, rows: np.ndarray, si_rows: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
        """(selective, selective_negative, median_gap) at each threshold for R label rows and their SIs: (T, 3, R)."""
        in_bottom = self.in_bottom(rows, si_rows.shape[1])  # the same at every threshold
        return np.array([self._at(in_bottom, si_rows >= t) for t in thresholds])  # a NaN SI is not selective

    def _at(self, in_bottom: np.ndarray, selective: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        negative = (selective & (in_bottom >= self.base_rate)).sum(axis=1)
        gap = _masked_median(in_bottom, selective) - _masked_median(in_bottom, ~selective)
        return selective.sum(axis=1).astype(np.float64), negative.astype(np.float64), gap


def permutation_null(values_si: npt.ArrayLike, bottom: npt.ArrayLike, labels: npt.ArrayLike, *,
                     threshold: float, permutations: int = 1000, seed: int = 0) -> NullResult:
    """Test a layer's selectivity claims against random labels (same category size), P times.

    permutation_nulls at one threshold; see there.
    """
    return permutation_nulls(values_si, bottom, labels, thresholds=(threshold,), permutations=permutations,
                             seed=seed)[0]


def permutation_nulls(values_si: npt.ArrayLike, bottom: npt.ArrayLike, labels: npt.ArrayLike, *,
                      thresholds: Sequence[float], permutations: int = 1000, seed: int = 0) -> tuple[NullResult, ...]:
    """Test a layer's selectivity claims against random labels (same category size), P times, at each threshold.

    values_si: (n, u) responses on the SI stat; bottom: (u, k) each unit's k first images (row
    indices into values_si) from the bottom of the negative stat, in the product's order;
    labels: (n,) bool, the category. Statistics, observed and under each permutation (the labels
    shuffled, SI recomputed, in_bottom recounted over the fixed bottom sets, which do not depend
    on the labels):

    - selective: units with SI >= threshold;
    - selective_negative: selective units with in_bottom >= the base rate k * n_c / n;
    - median_gap: median in_bottom of the selective units minus that of every other unit (units
      whose SI is NaN, a constant response, count among the others, as on the layer page). NaN
      when either group is empty; such permutations are left out of its p-value, mean and
      percentile (`valid` counts the rest), i.e. the test is conditional on both groups existing.

    Each p-value is upper-tailed: (1 + #{null >= observed}) / (valid + 1). The observed SIs are
    si()'s (float64 sums, as the layer page's), so the observed counts are the page's; the null's
    use float32 sums, about 1e-6 off, which only a unit that close to the threshold would feel.
    Permutations come from np.random.default_rng(seed) and do not depend on the chunking: the
    same seed, the same null.

    Cost: per permutation, a shuffle of n labels, one (n) @ (n x u) float32 product for the
    category sums and, for in_bottom, another against the bottom sets' membership matrix (or a
    gather of u * k labels when that matrix would pass DENSE_BOTTOM_BYTES), in chunks of permutations of about CHUNK_BYTES
    (tracemalloc's peak beside values_si: 73 MiB at n = 286,000, u = 1024, k = 1000). Measured
    on the project's machine, 2 CPU cores shared with other jobs (load average 2-8),
    P = 1000, k = 1000: n = 6,308, u = 512 in 1.5 s (2.3-2.9 s with the gather); n = 286,000, u = 512 in 33-44 s, of
    which about 14 s is the shuffles (rng.permuted). Worth caching per (run, layer, parameters).
    Each further threshold reuses the shuffles and products (only the counts are redone), and its
    result is the one a call at that threshold alone gives.
    """
    values = _values(values_si, np.float32)
    n, u = values.shape
    labels = _labels(labels, n)
    bottom = np.asarray(bottom)
    if bottom.ndim != 2 or bottom.shape[0] != u or not np.issubdtype(bottom.dtype, np.integer) \
            or bottom.size == 0 or bottom.min() < 0 or bottom.max() >= n:
        raise ValueError(f"bottom must be a ({u}, k) array of row indices into values_si")
    n_c = int(labels.sum())
    if n_c == 0 or n_c == n:
        raise ValueError("the category and the rest must both have images")
    if permutations < 1:
        raise ValueError("permutations must be at least 1")
    k = bottom.shape[1]
    bottom_matrix = None
    if n * u * 4 <= DENSE_BOTTOM_BYTES:
        bottom_matrix = np.zeros((n, u), np.float32)
        bottom_matrix[bottom, np.arange(u)[:, None]] = 1.0
    layer = _Layer(
        values=values,
        total=values.sum(axis=0, dtype=np.float64),
        lo=values.min(axis=0).astype(np.float64),
        hi=values.max(axis=0).astype(np.float64),
        bottom=bottom.ravel(),
        n_c=n_c,
        base_rate=k * n_c / n,
        bottom_matrix=bottom_matrix,
    )
    observed = layer.statistics(labels[None, :], si(values, labels)[None, :], thresholds)
    rng = np.random.default_rng(seed)
    # A permutation's rows: n labels (bool), their float32 copy, u * k gathered labels, u SIs.
    step = _chunk(5 * n + u * k + 64 * u, permutations, CHUNK_BYTES)
    null = np.empty((len(thresholds), 3, permutations))
    for start in range(0, permutations, step):
        rows = np.broadcast_to(labels, (min(step, permutations - start), n)).copy()
        rng.permuted(rows, axis=1, out=rows)  # each row shuffled on its own
        null[:, :, start:start + len(rows)] = layer.statistics(rows, layer.si(rows), thresholds)
    return tuple(
        NullResult(*(_summarise(float(o[0]), z) for o, z in zip(observed[i], null[i])), threshold=t, k=k,
                   base_rate=layer.base_rate, permutations=permutations, seed=seed)
        for i, t in enumerate(thresholds)
    )


def group_gap(values: npt.ArrayLike, chosen: npt.ArrayLike, *, permutations: int = 1000,
              seed: int = 0) -> NullStatistic:
    """Is the chosen units' median above the others'? Median gap against random groups of the same size.

    values: (u,) one number per unit (e.g. in_bottom); chosen: (u,) bool (e.g. the selective units).
    The null draws, P times, as many units as were chosen from all of them, without regard to what
    chose them: the gap a group of that size shows by chance. Upper-tailed p-value as in
    permutation_null. This is the control for "true of the selective units, and just as true of the
    rest": a label-permutation null cannot give it, since random labels leave no unit selective.
    """
    x = np.asarray(values, dtype=np.float64)
    mask = np.asarray(chosen, dtype=bool)
    if x.ndim != 1 or mask.shape != x.shape:
        raise ValueError("values and chosen must be two (u,) arrays")
    if permutations < 1:
        raise ValueError("permutations must be at least 1")
    observed = _masked_median(x[None, :], mask[None, :]) - _masked_median(x[None, :], ~mask[None, :])
    rng = np.random.default_rng(seed)
    rows = rng.permuted(np.broadcast_to(mask, (permutations, x.size)).copy(), axis=1)
    xs = np.broadcast_to(x, rows.shape)
    null = _masked_median(xs, rows) - _masked_median(xs, ~rows)
    return _summarise(float(observed[0]), null)


class ClassRow(NamedTuple):
    """One class of a unit's class profile (app/class_profile.py groups them in SQL)."""

    key: Hashable  # the class key as given, e.g. a WNID
    n: int  # its images
    mean: float  # of the unit's responses to them
    median: float
    is_category: bool
    few_images: bool  # n under the caller's threshold: its mean rests on too few images to rank it by


def category_median(profile: list[ClassRow]) -> float | None:
    """The category's median class: the median, over the category's classes, of their class means.

    Each class counts once, whatever its size. None when no class is in the category.
    """
    category_means = [row.mean for row in profile if row.is_category]
    return float(np.median(category_means)) if category_means else None


def beats_category_median(profile: list[ClassRow]) -> list[Hashable]:
    """Non-category classes whose mean exceeds the category's median class, in profile order.

    Empty when no class is in the category.
    """
    median = category_median(profile)
    if median is None:
        return []
    return [row.key for row in profile if not row.is_category and row.mean > median]


def default_k(n_images: int, study_k: int = 1000) -> tuple[int, str]:
    """A k whose top and bottom sets stay well apart, and why: (k, reason for the page).

    The study's k when there are at least 6 * study_k images (k is then at most a sixth of them,
    as 1000 is of the 6,308 shared photos); otherwise a sixth of the images, at least 1.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    if n_images >= 6 * study_k:
        return study_k, f"k = {study_k}, the study's"
    k = max(1, n_images // 6)
    return k, (f"k = {k}, a sixth of the {n_images:,} images: the study's {study_k} needs at least "
               f"{6 * study_k:,} images to stay a sixth of them or less")


def overlap_warning(k: int, n_images: int) -> str | None:
    """A warning when a unit's top k and bottom k must share images (2k > n), else None."""
    if 2 * k <= n_images:
        return None
    return (f"k = {k} is more than half of the {n_images:,} images: each unit's top and bottom {k} share "
            f"at least {2 * k - n_images:,} images, so in_top and in_bottom partly count the same images, "
            f"and a category image counted in both says nothing about two-sided tuning")
