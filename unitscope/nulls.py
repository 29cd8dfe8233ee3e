"""Permutation nulls: a layer's selectivity claims against shuffled labels, and a group of units against random groups.

numpy only. The SIs come from unitscope.stats.si's formula; the p-values are upper-tailed,
(1 + #{null >= observed}) / (valid + 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from unitscope.stats import CHUNK_BYTES, _chunk, _labels, _si_from_sums, _values, si

DENSE_BOTTOM_BYTES = 64 * 2**20  # the bottom sets as an (n, u) float32 matrix up to this size (n = 32,768 at u = 512)


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
                      thresholds: Sequence[float], permutations: int = 1000, seed: int = 0,
                      checkpoint: Callable[[], None] | None = None) -> tuple[NullResult, ...]:
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
    same seed, the same null. `checkpoint`, if given, is called before each chunk and may raise to
    stop the computation (the server's, when a client leaves).

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
        if checkpoint is not None:
            checkpoint()
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
