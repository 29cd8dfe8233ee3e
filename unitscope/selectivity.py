"""The field's selectivity measures beside the study's SI: d′, Morcos et al.'s CSI, Baek et al.'s rank-sum criterion,
and the shape of each unit's tuning curve (sparseness, kurtosis, share above half its peak) as IT papers report it.

numpy and scipy, vectorised over a layer's units: values are (n images, u units), labels (n,) bool for the
category, classes (n,) int class codes. Every function returns one value per unit, NaN where undefined.
The rules that call a unit selective by each measure are in unitscope.claim_rules; docs/claims.md gives
each definition's source.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import sparse, special

from unitscope.claim_rules import BAEK_ALPHA, FEW_IMAGES
from unitscope.stats import CHUNK_BYTES, SortedRuns, column_runs


class Reference(NamedTuple):
    """A published value of a tuning statistic for IT neurons, or the value a reference distribution has."""

    statistic: str  # sparseness, kurtosis or half_peak_share
    value: float
    spread: str | None
    source: str


# What the units' tuning shapes are compared with (docs/claims.md, "Tuning shape"). Sparseness and the
# half-peak share of single IT neurons as the papers report them; the half-normal and exponential
# distributions' own values, the shapes the IT literature contrasts (kurtosis is excess kurtosis).
IT_REFERENCE: tuple[Reference, ...] = (
    Reference("sparseness", 0.65, None, "Rolls & Tovee 1995, J Neurophysiol 73:713: mean over face-selective IT "
              "neurons, 68 images (23 faces, 45 scenes), raw rates"),
    Reference("sparseness", 0.77, None, "Franco, Rolls, Aggelopoulos & Jerez 2007, Biol Cybern 96:547: mean over "
              "IT neurons, 20 objects and faces"),
    Reference("sparseness", 0.66, "± 0.16 (SD)", "Kreiman et al. 2006, Neuron 49:433: IT single units, 77 pictures, "
              "each neuron's minimum response subtracted"),
    Reference("sparseness", 2 / np.pi, None, "a half-normal distribution of rates: 2/π"),
    Reference("sparseness", 0.5, None, "an exponential distribution of rates"),
    Reference("kurtosis", 0.8691773036059736, None, "a half-normal distribution: 8(π - 3) / (π - 2)²"),
    Reference("kurtosis", 6.0, None, "an exponential distribution (Baddeley et al. 1997, Proc R Soc B 264:1775, "
              "found IT spike counts roughly exponential)"),
    Reference("half_peak_share", 0.10, "about", "Rust & DiCarlo 2012, J Neurosci 32:10170: the average V4 or IT "
              "neuron responds above half its peak to about 10% of natural images"),
    Reference("half_peak_share", 0.21, "± 0.13 (SD)", "Kreiman et al. 2006, Neuron 49:433: IT single units, "
              "77 pictures"),
)


def _blocks(values: npt.ArrayLike) -> Iterator[tuple[slice, np.ndarray]]:
    """(columns, float64 copy of those columns) of an (n, u) array, about stats.CHUNK_BYTES of them at a time: as
    many columns as fit (58 at 286,000 images, 13 at 1.28M), not a copy of the whole layer at any number of images."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must be (images, units), got shape {values.shape}")
    step = max(1, CHUNK_BYTES // (8 * max(1, values.shape[0])))
    for start in range(0, values.shape[1], step):
        columns = slice(start, start + step)
        yield columns, values[:, columns].astype(np.float64)


def _labels(labels: npt.ArrayLike, n: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=bool)
    if labels.shape != (n,):
        raise ValueError(f"labels must be ({n},), got {labels.shape}")
    return labels


# A group's sum of squared deviations from the block's sums is trusted while it keeps at least this share of the sum
# of squares it is taken from: past it (a group mean 32 of its SDs from the column's, or a constant group) the
# subtraction loses more than 10 of float64's 52 bits, and the unit's d′ is computed from copies of its groups.
_KEPT_SHARE = 2.0**-10


def d_primes(values: npt.ArrayLike, label_sets: Sequence[npt.ArrayLike]) -> np.ndarray:
    """(mean_C - mean_rest) / sqrt((var_C + var_rest) / 2) per label set and unit (C, u), sample variances (ddof 1).

    NaN when either group has fewer than two images or both variances are 0. Each block is centred on its column
    means and squared once for every category; a category's sums are those of its rows, the rest's the block's less
    them (where each category's copies of both groups took eight passes). Where that would cancel (_KEPT_SHARE), the
    unit's groups are copied and each variance taken about its own mean, as before. Every sum runs down one column
    (contiguous in the layer's column-major reads), so a unit's d′ does not depend on the columns beside it.
    """
    values = np.asarray(values)
    masks = np.array([_labels(m, values.shape[0]) for m in label_sets], dtype=bool).reshape(len(label_sets),
                                                                                              values.shape[0])
    out = np.full((len(masks), values.shape[1]), np.nan)
    n1 = masks.sum(axis=1)
    live = np.flatnonzero((n1 >= 2) & (values.shape[0] - n1 >= 2))
    if not live.size:
        return out
    n1 = n1[live, None].astype(np.float64)
    n0 = values.shape[0] - n1
    for columns, block in _blocks(values):
        block -= block.mean(axis=0)
        cat, total = np.array([block[masks[row]].sum(axis=0) for row in live]), block.sum(axis=0)
        np.square(block, out=block)
        cat_sq, total_sq = np.array([block[masks[row]].sum(axis=0) for row in live]), block.sum(axis=0)
        rest, rest_sq = total - cat, total_sq - cat_sq
        m2_cat, m2_rest = cat_sq - cat**2 / n1, rest_sq - rest**2 / n0
        with np.errstate(invalid="ignore", divide="ignore"):  # a negative M2 is shaky, and computed again below
            pooled = np.sqrt((m2_cat / (n1 - 1) + m2_rest / (n0 - 1)) / 2)
            found = np.where(pooled > 0, (cat / n1 - rest / n0) / pooled, np.nan)
        shaky = (m2_cat <= _KEPT_SHARE * cat_sq) | (m2_rest <= _KEPT_SHARE * rest_sq)
        for i, j in zip(*np.nonzero(shaky)):
            found[i, j] = _two_pass_d_prime(values[:, columns.start + j], masks[live[i]])
        out[live, columns] = found
    return out


def _two_pass_d_prime(column: np.ndarray, labels: np.ndarray) -> float:
    """One unit's d′ from copies of its two groups (float64), each variance about its own mean."""
    cat, rest = column[labels].astype(np.float64), column[~labels].astype(np.float64)
    pooled = math.sqrt((cat.var(ddof=1) + rest.var(ddof=1)) / 2)
    return (cat.mean() - rest.mean()) / pooled if pooled > 0 else math.nan


def _class_index(classes: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(names, index): class codes and each image's row among them, as int32. ImageNet's codes (small non-negative
    integers) are their own rows, with no sort: np.unique's took 95 ms a call at 1.28M images, once per block."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "iu" and classes.size and 0 <= classes.min() and classes.max() < 2**16:
        return np.arange(int(classes.max()) + 1), classes.astype(np.int32)
    names, index = np.unique(classes, return_inverse=True)
    return names, index.astype(np.int32)


def class_means(values: npt.ArrayLike, classes: npt.ArrayLike, min_images: int = FEW_IMAGES) -> tuple[
        np.ndarray, np.ndarray]:
    """(codes, means): the classes of min_images or more images, and each one's mean response per unit (c, u)."""
    values = np.asarray(values)
    codes, row = _class_index(classes)
    counts = np.bincount(row, minlength=len(codes))
    kept = counts >= max(min_images, 1)
    # Each kept class a row of ones over its images: one sparse product sums every class, with no copy of the rows
    # grouped by class (the copy and np.add.reduceat took 2.4x as long at 100,000 images).
    images = np.flatnonzero(kept[row])  # in ascending order: each class sums its images in the order of the rows
    rank = np.cumsum(kept) - 1  # a kept class's row among the kept
    members = sparse.csr_array((np.ones(images.size), (rank[row[images]], images)), shape=(int(kept.sum()), row.size))
    means = np.empty((members.shape[0], values.shape[1]))
    for columns, block in _blocks(values):
        means[:, columns] = members @ block / counts[kept, None]
    return codes[kept], means


def csi(values: npt.ArrayLike, classes: npt.ArrayLike, min_images: int = FEW_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """Morcos et al. (2018)'s class selectivity index on post-ReLU responses, and each unit's preferred class.

    The response is max(value, 0), as after the ReLU. Over the classes of min_images or more images:
    CSI = (mu_max - mu_rest) / (mu_max + mu_rest), mu_max the highest class mean and mu_rest the mean of
    the other classes' means. 0: no class preferred; 1: only one class drives the unit. Returns (csi,
    preferred class code); NaN and -1 when the unit is silent on every image or fewer than two classes count.
    """
    codes, means = class_means(np.maximum(np.asarray(values), 0), classes, min_images)
    u = np.shape(values)[1]
    if len(codes) < 2:
        return np.full(u, np.nan), np.full(u, -1)
    best = means.argmax(axis=0)
    top = means.max(axis=0)
    rest = (means.sum(axis=0) - top) / (len(codes) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        index = np.where(top + rest > 0, (top - rest) / (top + rest), np.nan)
    return index, np.where(np.isnan(index), -1, codes[best])


def rank_sum_p_by_class(values: npt.ArrayLike, label_sets: Sequence[npt.ArrayLike], classes: npt.ArrayLike,
                        min_images: int = FEW_IMAGES,
                        runs: SortedRuns | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each label set (a category): (codes, p), the classes outside it with min_images or more images, and per
    class and unit (c, u) the one-sided Mann–Whitney p that the category's responses exceed the class's.
    runs: stats.sorted_runs(values), when the caller has them.

    U counts the pairs where the category's value is larger, ties 1/2; p is its normal approximation with a
    continuity correction and no tie correction (scipy.stats.mannwhitneyu's asymptotic method, the same for
    continuous responses, which rarely tie). Each unit's responses are sorted once for every category: an
    image's count of category values below it, and at or below it, is then a cumulative sum along that order,
    and a class's U is n1 n2 less the sum over its images (one bincount over the classes serves all of them).
    """
    values = np.asarray(values)
    n, u = values.shape
    names, classes = _class_index(classes)
    masks = [_labels(m, n) for m in label_sets]
    plans = []  # per category: (its tested classes, their sizes, category size, whether it splits one of them)
    for mask in masks:
        counts = np.bincount(classes[~mask], minlength=len(names))
        codes = np.flatnonzero(counts >= max(min_images, 1))
        split = bool(np.bincount(classes[mask], minlength=len(names))[codes].any())
        plans.append((codes, counts[codes].astype(np.float64), int(mask.sum()), split))
    # Each image's categories as the bits of a byte, eight categories to a byte: a unit gathers them in its sorted
    # order once for every category (a gather per category took 2.3x as long at 1.28M images).
    bits = [sum(mask.astype(np.uint8) << k for k, mask in enumerate(masks[g:g + 8])) for g in range(0, len(masks), 8)]
    sums = [np.zeros((u, len(codes))) for codes, *_ in plans]  # per unit and tested class: the sum of its s
    below = np.zeros(n + 1, dtype=np.int32)  # category values before each sorted position
    in_cat = np.empty(n, dtype=np.uint8)
    for columns, _, part_runs in column_runs(values, runs) if n else ():
        order, lo, hi = part_runs.order, part_runs.lo, part_runs.hi
        # Unit by unit: its (n,) temporaries stay in cache, where the block's were slower for all their fewer calls.
        for j, unit in enumerate(range(columns.start, columns.stop)):
            by_class = classes[order[j]]
            sorted_bits = [b[order[j]] for b in bits]
            for i, ((codes, _, _, split), found) in enumerate(zip(plans, sums)):
                np.right_shift(sorted_bits[i // 8], i % 8, out=in_cat)
                np.bitwise_and(in_cat, 1, out=in_cat)
                np.cumsum(in_cat, out=below[1:])  # into int32: 5x numpy's bool-to-float64 cumsum
                # s: the category values below an image, ties 1/2 (its run's counts at both ends); U = n1 n2 - sum s.
                s = 0.5 * (below[lo[j]] + below[hi[j]]) if part_runs.tied[j] else below[:-1]
                if split:  # a tested class with category images too: only its other images count
                    s = np.where(in_cat, 0.0, s)
                found[unit] = np.bincount(by_class, weights=s, minlength=len(names))[codes]
    out = []
    for (codes, n2, n1, _), found in zip(plans, sums):
        u_stat = n1 * n2[:, None] - found.T  # pairs where the category's value is larger, ties 1/2
        mean, sd = n1 * n2 / 2, np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append((names[codes], special.ndtr(-(u_stat - mean[:, None] - 0.5) / sd[:, None])))
    return out


def beats_every_class(values: npt.ArrayLike, label_sets: Sequence[npt.ArrayLike], classes: npt.ArrayLike,
                      min_images: int = FEW_IMAGES, alpha: float = BAEK_ALPHA,
                      runs: SortedRuns | None = None) -> np.ndarray:
    """Baek et al. (2021)'s criterion for each label set (a category, as the preferred class): its responses
    exceed those of every class outside it (of min_images or more images) in a one-sided rank-sum test at
    p < alpha.

    (categories, u) float: 1.0 or 0.0, NaN when the category or every other class is too small to test.
    """
    found = rank_sum_p_by_class(values, label_sets, classes, min_images, runs)
    out = np.full((len(found), np.shape(values)[1]), np.nan)
    for i, (mask, (codes, p)) in enumerate(zip(label_sets, found)):
        if np.asarray(mask, dtype=bool).sum() >= min_images and len(codes):
            out[i] = (p < alpha).all(axis=0)
    return out


def sparseness(rates: npt.ArrayLike) -> np.ndarray:
    """Rolls & Tovee (1995)'s sparseness a = (mean r)^2 / mean(r^2) of non-negative rates (n, u) per unit.

    1: every image drives the unit equally; 1/n: a single image drives it. NaN for a silent unit.
    """
    rates = np.asarray(rates, dtype=np.float64)
    if (rates < 0).any():
        raise ValueError("sparseness needs non-negative rates")
    square = np.einsum("ij,ij->j", rates, rates) / len(rates)  # no (n, u) temporary
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(square > 0, rates.mean(axis=0) ** 2 / square, np.nan)


def kurtosis(values: npt.ArrayLike) -> np.ndarray:
    """Excess kurtosis (Fisher: 0 for a normal distribution, 3 for an exponential one) per unit, of (n, u) values;
    NaN for a constant unit."""
    values = np.asarray(values, dtype=np.float64)
    centred = values - values.mean(axis=0)
    centred *= centred  # squares by multiplication: ** on a float array is several times slower
    m2 = centred.mean(axis=0)
    m4 = np.einsum("ij,ij->j", centred, centred) / len(centred)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m2 > 0, m4 / m2**2 - 3.0, np.nan)


def half_peak_share(rates: npt.ArrayLike) -> np.ndarray:
    """The share of images whose rate is above half the unit's peak rate, of non-negative rates (n, u); NaN when
    the unit is silent."""
    rates = np.asarray(rates, dtype=np.float64)
    peak = rates.max(axis=0)
    share = (rates > peak / 2).mean(axis=0)
    return np.where(peak > 0, share, np.nan)


def tuning_shape(values: npt.ArrayLike) -> dict[str, np.ndarray]:
    """Sparseness, kurtosis and half-peak share of each unit's responses (n, u), post-ReLU and pre-ReLU.

    Post-ReLU, the rate is max(value, 0), as a firing rate is. Pre-ReLU, the rate is value - min(value): the
    unit's response above its own floor, as a baseline-subtracted rate is (kurtosis does not depend on it).
    """
    u = np.shape(values)[1]
    out = {name: np.empty(u) for name in ("sparseness", "kurtosis", "half_peak_share", "sparseness_pre",
                                          "kurtosis_pre", "half_peak_share_pre")}
    for columns, block in _blocks(values):
        post = np.maximum(block, 0.0)
        pre = block - block.min(axis=0)
        for name, value in (("sparseness", sparseness(post)), ("kurtosis", kurtosis(post)),
                            ("half_peak_share", half_peak_share(post)), ("sparseness_pre", sparseness(pre)),
                            ("kurtosis_pre", kurtosis(block)), ("half_peak_share_pre", half_peak_share(pre))):
            out[name][columns] = value
    return out
