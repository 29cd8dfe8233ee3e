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
from scipy import sparse

from unitscope.stats import CHUNK_BYTES, _chunk, _labels, _si_from_sums, _values, si

SPARSE_BOTTOM_SHARE = 0.25  # in_bottom by a sparse product while n <= this x c x k, else by a gather (_membership)
# Images per product of the shuffles with the responses, a multiple of 8 (whole bytes of the packed shuffles). A block
# of images lets a product take many shuffles in little memory: at 1.28M images and 52 units, 20 shuffles over all the
# images ran at 42 GFLOP/s, 200 over blocks of 16,384 images at 83 (2026-12-04). A unit's category sum is the float64
# sum of its blocks' float32 products, whatever the chunk of units or of shuffles, so any chunking gives one null.
IMAGE_BLOCK = 16_384


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


def _at(in_bottom: np.ndarray, selective: np.ndarray, base_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(selective, selective_negative, median_gap) of R rows of units' in_bottom counts and selectivity: 3 x (R,)."""
    negative = (selective & (in_bottom >= base_rate)).sum(axis=1)
    gap = _masked_median(in_bottom, selective) - _masked_median(in_bottom, ~selective)
    return selective.sum(axis=1).astype(np.float64), negative.astype(np.float64), gap


class Shuffles:
    """P shuffles of a category's labels, drawn once and kept packed (P x n bits), for every chunk of units.

    From np.random.default_rng(seed), a chunk of rows per draw: rng.permuted shuffles each row on its own, so
    the shuffles are those of one draw of all P rows whatever the chunk (tests/test_controls.py checks it).
    """

    def __init__(self, labels: np.ndarray, permutations: int, seed: int) -> None:
        if permutations < 1:
            raise ValueError("permutations must be at least 1")
        self.labels, self.permutations, self.seed = labels, permutations, seed
        n = labels.size
        rng = np.random.default_rng(seed)
        self._packed = np.empty((permutations, (n + 7) // 8), np.uint8)
        step = _chunk(2 * n, permutations, CHUNK_BYTES)
        for start in range(0, permutations, step):
            rows = np.broadcast_to(labels, (min(step, permutations - start), n)).copy()
            rng.permuted(rows, axis=1, out=rows)  # each row shuffled on its own
            self._packed[start:start + len(rows)] = np.packbits(rows, axis=1)

    def bits(self, rows: slice, images: slice) -> np.ndarray:
        """(R, m) bool: these shuffles' labels of images start .. stop - 1 (start a multiple of 8)."""
        stop = min(images.stop, self.labels.size)
        return np.unpackbits(self._packed[rows, images.start // 8:(stop + 7) // 8], axis=1,
                             count=stop - images.start).view(np.bool_)

    def count(self, rows: slice, bottom: np.ndarray) -> np.ndarray:
        """(R, c): in each of these shuffles, the category images among each of c units' (c, k) bottom images, read
        from the packed bits (no (R, n) copy)."""
        flat = bottom.ravel()
        shift = (7 - (flat & 7)).astype(np.uint8)  # np.packbits puts an image's label in bit 7 - (image % 8)
        bits = (self._packed[rows][:, flat >> 3] >> shift) & 1
        return np.count_nonzero(bits.reshape(len(bits), *bottom.shape), axis=2)


class LayerNull:
    """A layer's label-permutation nulls (see permutation_nulls), one per bottom set, fed a chunk of units at a time.

    add() each chunk of columns of the SI stat once, in any order, then results(). What it keeps is
    each unit's SI, and its in_bottom of each bottom set, for the observed labels and every shuffle, (1 + P) x u
    numbers each, so memory is bounded by a chunk, not by the layer (publication's derived tables at any number of
    images); the statistics over units come last. A unit's numbers do not depend on the chunk it came in: any
    chunking gives one null. The bottom sets (publication's: one per negative stat of the claims' grid) share the
    shuffles and the SIs' products, which cost most at many images.
    """

    def __init__(self, bottoms: Sequence[npt.ArrayLike], shuffles: Shuffles, *, thresholds: Sequence[float],
                 checkpoint: Callable[[], None] | None = None) -> None:
        labels = shuffles.labels
        n = labels.size
        self.bottoms = [np.asarray(bottom) for bottom in bottoms]
        for bottom in self.bottoms:
            if bottom.ndim != 2 or not np.issubdtype(bottom.dtype, np.integer) or bottom.size == 0 \
                    or bottom.min() < 0 or bottom.max() >= n or bottom.shape[0] != self.bottoms[0].shape[0]:
                raise ValueError(f"each bottom must be a (units, k) array of row indices into the {n} images")
        if not self.bottoms:
            raise ValueError("need at least one bottom set")
        n_c = int(labels.sum())
        if n_c == 0 or n_c == n:
            raise ValueError("the category and the rest must both have images")
        self.shuffles, self.thresholds, self.checkpoint, self.n_c = shuffles, tuple(thresholds), checkpoint, n_c
        units = self.bottoms[0].shape[0]
        # Row 0: the observed labels; rows 1..P: the shuffles.
        self._si = np.full((1 + shuffles.permutations, units), np.nan)
        self._in_bottom = [np.zeros((1 + shuffles.permutations, units), np.int64) for _ in self.bottoms]
        self._added = np.zeros(units, bool)

    def add(self, first: int, values_si: npt.ArrayLike) -> None:
        """Take units first .. first + c - 1: their (n, c) responses on the SI stat."""
        values = _values(values_si, np.float32)
        n, c = values.shape
        labels = self.shuffles.labels
        if n != labels.size or first < 0 or first + c > len(self._added):
            raise ValueError(f"values_si must be ({labels.size}, c) columns of units within 0..{len(self._added) - 1}")
        columns = slice(first, first + c)
        bottoms = [bottom[columns] for bottom in self.bottoms]
        total = values.sum(axis=0, dtype=np.float64)
        lo, hi = values.min(axis=0).astype(np.float64), values.max(axis=0).astype(np.float64)
        # The observed SIs are si()'s (float64 sums, as the layer page's); the shuffles' use float32 products.
        self._si[0, columns] = si(values, labels)
        for bottom, counts in zip(bottoms, self._in_bottom):
            counts[0, columns] = np.count_nonzero(labels[bottom], axis=1)
        members = [_membership(bottom, n) for bottom in bottoms]
        images = [slice(start, min(n, start + IMAGE_BLOCK)) for start in range(0, n, IMAGE_BLOCK)]
        member_blocks = [None if member is None else [member[block] for block in images] for member in members]
        # A shuffle's rows: an image block's labels (bool and float32), c * k gathered label bytes, c SIs and sums.
        k = max(bottom.shape[1] for bottom in bottoms)
        step = _chunk(5 * min(n, IMAGE_BLOCK) + 2 * c * k + 64 * c, self.shuffles.permutations, CHUNK_BYTES)
        for start in range(0, self.shuffles.permutations, step):
            if self.checkpoint is not None:
                self.checkpoint()
            rows = slice(start, min(start + step, self.shuffles.permutations))
            cat_sum = np.zeros((c, rows.stop - start))
            in_bottom = [None if blocks is None else np.zeros((rows.stop - start, c)) for blocks in member_blocks]
            for i, block in enumerate(images):
                as_float = self.shuffles.bits(rows, block).astype(np.float32)
                # values.T @ rows.T, the R x c product transposed: in this orientation OpenBLAS ran it 9x faster
                # (34 against 4 GFLOPS for R = 100, n = 286,000, u = 512).
                cat_sum += values[block].T @ as_float.T
                for blocks, counts in zip(member_blocks, in_bottom):
                    if blocks is not None:  # exact: sums of at most k ones
                        counts += as_float @ blocks[i]
            at = slice(1 + start, 1 + rows.stop)
            self._si[at, columns] = _si_from_sums(cat_sum.T, total, lo, hi, self.n_c, n)
            for bottom, counts, stored in zip(bottoms, in_bottom, self._in_bottom):
                stored[at, columns] = np.rint(counts) if counts is not None else self.shuffles.count(rows, bottom)
        self._added[columns] = True

    def results(self) -> list[tuple[NullResult, ...]]:
        """Per bottom set, the null at each threshold, once every unit was added."""
        if not self._added.all():
            raise ValueError(f"units {np.flatnonzero(~self._added)[:5].tolist()}... were never added")
        out = []
        for bottom, in_bottom in zip(self.bottoms, self._in_bottom):
            k = bottom.shape[1]
            base_rate = k * self.n_c / self.shuffles.labels.size
            found = []
            for t in self.thresholds:
                stats = _at(in_bottom, self._si >= t, base_rate)  # a NaN SI is not selective
                found.append(NullResult(*(_summarise(float(s[0]), s[1:]) for s in stats), threshold=t, k=k,
                                        base_rate=base_rate, permutations=self.shuffles.permutations,
                                        seed=self.shuffles.seed))
            out.append(tuple(found))
        return out


def _membership(bottom: np.ndarray, n: int) -> sparse.csr_array | None:
    """The bottom sets' (n, c) 0/1 membership as a sparse matrix, when a product with it beats a gather: in_bottom of R
    shuffles is then (R, n) @ (n, c), c * k multiply-adds per shuffle plus its n labels made float32; a gather of the
    c * k labels costs no n. Measured for R shuffles, k = 1000 (2026-12-04): n = 40,000, c = 512: 0.029 s against
    0.111 s; n = 200,000, c = 336: 0.036 s against 0.025 s. None past SPARSE_BOTTOM_SHARE: gather."""
    c, k = bottom.shape
    if n > SPARSE_BOTTOM_SHARE * c * k:
        return None
    return sparse.csr_array((np.ones(c * k, np.float32), (bottom.ravel(), np.repeat(np.arange(c), k))), shape=(n, c))


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
    Permutations come from np.random.default_rng(seed) (Shuffles) and do not depend on the chunking:
    the same seed, the same null. `checkpoint`, if given, is called before each chunk and may raise to
    stop the computation (the server's, when a client leaves). This is LayerNull fed the whole layer
    at once; publication feeds it a chunk of units at a time.

    Cost: per permutation, a shuffle of n labels, one (n) @ (n x u) float32 product for the
    category sums and, for in_bottom, a sparse one against the bottom sets' membership (or a gather of
    u * k labels at many images, see _membership), in chunks of permutations of about
    CHUNK_BYTES, the shuffles kept packed (P x n bits: 36 MB at n = 286,000). Measured on the project's
    machine, 2 CPU cores shared with other jobs (load average 2-8), P = 1000, k = 1000: n = 6,308, u = 512 in
    1.5 s (2.3-2.9 s with the gather); n = 286,000, u = 512 in 33-44 s, of which about 14 s is the shuffles
    (rng.permuted). Worth caching per (run, layer, parameters). Each further threshold reuses the shuffles and
    products (only the counts are redone), and its result is the one a call at that threshold alone gives.
    """
    values = _values(values_si, np.float32)
    labels = _labels(labels, values.shape[0])
    bottom = np.asarray(bottom)
    if bottom.ndim != 2 or bottom.shape[0] != values.shape[1]:
        raise ValueError(f"bottom must be a ({values.shape[1]}, k) array of row indices into values_si")
    null = LayerNull([bottom], Shuffles(labels, permutations, seed), thresholds=thresholds, checkpoint=checkpoint)
    null.add(0, values)
    return null.results()[0]


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
