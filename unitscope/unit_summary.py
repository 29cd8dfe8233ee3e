"""A unit page's histogram, class profile and rankings of images: computed from response columns for one unit
(the server) or a chunk of a layer's units (publication), and the SQL that reads the stored ones.

Both callers feed the same function the unit's column in image id order, and every number is per column
(integer counts, a sum in image order, two middle values), so a stored value is the one the server would
compute, to the bit (tests/test_unit_pages_stored.py). Publication stores them (worker.derived_unit); the
server computes them only when a DB lacks the stored rows. numpy, not SQL: one read of a chunk gives every
category's histogram and the class profile, where grouped SQL scanned the layer twice per stat and category.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from unitscope import schema

# Values per block of columns: bounds the float64 and gathered copies (32 MB each) at any number of images.
BLOCK_VALUES = 4 * 2**20


@dataclass(frozen=True)
class Histogram:
    """A unit's responses on one stat, counted in equal bins over [lo, hi] for the category and the rest."""

    lo: float
    hi: float
    category: list[int]
    rest: list[int]

    @property
    def edges(self) -> list[float]:
        """The bins' len + 1 edges; one bin of width 1 centred on lo when the unit never varies."""
        bins = len(self.category)
        width = (self.hi - self.lo) / bins if self.hi > self.lo else 1.0
        start = self.lo if self.hi > self.lo else self.lo - 0.5
        return [start + i * width for i in range(bins + 1)]


@dataclass(frozen=True)
class BinCounts:
    """Each column's range and its counts in HIST_BINS bins, for every category and in all."""

    lo: np.ndarray  # (columns,) float64: the column's min
    hi: np.ndarray  # (columns,) float64: its max
    category: np.ndarray  # (categories, columns, HIST_BINS) int64: each category's images per bin
    total: np.ndarray  # (columns, HIST_BINS) int64: every image per bin

    @classmethod
    def joined(cls, parts: Sequence[BinCounts]) -> BinCounts:
        """The counts of consecutive blocks of columns, as one."""
        return cls(lo=np.concatenate([p.lo for p in parts]), hi=np.concatenate([p.hi for p in parts]),
                   category=np.concatenate([p.category for p in parts], axis=1),
                   total=np.concatenate([p.total for p in parts]))

    def bins(self) -> np.ndarray:
        """Each column's bins a Histogram holds: HIST_BINS, or one when the column never varies."""
        return np.where(self.hi > self.lo, schema.HIST_BINS, 1)

    def histogram(self, row: int, column: int) -> Histogram:
        """The column's Histogram for the category of `row`."""
        bins = int(self.bins()[column])
        cat = self.category[row, column, :bins]
        return Histogram(lo=float(self.lo[column]), hi=float(self.hi[column]), category=cat.tolist(),
                         rest=(self.total[column, :bins] - cat).tolist())


def _blocks(values: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first column, (c, images) rows) of values (images, columns): a block of columns at a time, each row one
    column, contiguous (a view when values is a transposed C array, as scores.layer_chunks gives)."""
    images, columns = values.shape
    step = max(1, BLOCK_VALUES // max(images, 1))
    for first in range(0, columns, step):
        yield first, np.ascontiguousarray(values[:, first:first + step].T)


def bin_counts(values: np.ndarray, masks: Sequence[np.ndarray]) -> BinCounts:
    """Each column of values (images, columns) binned in HIST_BINS equal bins from its min to its max, counted
    for each mask of images and in all.

    A value's bin is floor((v - lo) / ((hi - lo) / HIST_BINS)) in float64, the max in the last bin; every
    value in bin 0 when lo = hi.
    """
    images, columns = values.shape
    bins = schema.HIST_BINS
    lo, hi = np.zeros(columns), np.zeros(columns)
    category = np.zeros((len(masks), columns, bins), dtype=np.int64)
    total = np.zeros((columns, bins), dtype=np.int64)
    members = [np.flatnonzero(mask) for mask in masks]
    for first, rows in _blocks(values):
        v = rows.astype(np.float64)
        last = first + len(v)
        lo[first:last], hi[first:last] = v.min(axis=1), v.max(axis=1)
        varies = hi[first:last] > lo[first:last]
        width = np.where(varies, (hi[first:last] - lo[first:last]) / bins, 1.0)
        v -= lo[first:last, None]
        v /= width[:, None]
        np.floor(v, out=v)
        np.minimum(v, bins - 1, out=v)  # a column that never varies is all 0 here: (v - lo) / 1
        # One bincount per mask over every column of the block: each column's bins offset by its place.
        key = v.astype(np.intp) + bins * np.arange(len(v))[:, None]
        total[first:last] = np.bincount(key.ravel(), minlength=len(v) * bins).reshape(-1, bins)
        for row, ids in enumerate(members):
            category[row, first:last] = np.bincount(key[:, ids].ravel(), minlength=len(v) * bins).reshape(-1, bins)
    return BinCounts(lo=lo, hi=hi, category=category, total=total)


@dataclass(frozen=True)
class ClassProfiles:
    """Each class's images, and each column's mean and median response over them (NaN for a class without any)."""

    n: np.ndarray  # (classes,) int64
    mean: np.ndarray  # (columns, classes) float64
    median: np.ndarray  # (columns, classes) float64

    def rows(self, column: int) -> list[tuple[int, int, float, float]]:
        """(class code, n, mean, median) of every class with images, for one column."""
        return [(code, int(self.n[code]), float(self.mean[column, code]), float(self.median[column, code]))
                for code in np.flatnonzero(self.n).tolist()]


def class_profiles(values: np.ndarray, codes: np.ndarray, classes: int) -> ClassProfiles:
    """Each column's class profile: values (images, columns), codes (images,) each image's class in [0, classes).

    The mean is the class's sum in image order (float64), divided by its images; the median the middle value, or
    the mean of the two middle ones in float64.
    """
    columns = values.shape[1]
    n = np.bincount(codes, minlength=classes)
    order = np.argsort(codes, kind="stable")
    ends = np.cumsum(n)
    present = np.flatnonzero(n)
    mean = np.empty((columns, classes))  # every row is a bincount below; a class without images is NaN at the end
    median = np.full((columns, classes), np.nan)
    for first, rows in _blocks(values):
        last = first + len(rows)
        for i, row in enumerate(rows):
            # bincount adds each class's weights one by one in image order: the same sum for a column alone or in
            # a chunk
            mean[first + i] = np.bincount(codes, weights=row, minlength=classes)
        by_class = rows[:, order]
        for code in present.tolist():
            size = int(n[code])
            middle = sorted({(size - 1) // 2, size // 2})
            part = np.partition(by_class[:, ends[code] - size:ends[code]], middle, axis=1)
            median[first:last, code] = (part[:, middle[0]].astype(np.float64) + part[:, middle[-1]]) / 2
    mean[:, present] /= n[present]
    mean[:, n == 0] = np.nan
    return ClassProfiles(n=n, mean=mean, median=median)


# How each ranking orders a unit's images: by this key of the value, smallest first, ties by image id
# (metrics_sql.ranks_sql's top and bottom, and ranking_sql's near zero).
RANKING_KEYS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"top": np.negative, "bottom": np.positive,
                                                               "near_zero": np.abs}


def first_rows(values: np.ndarray, n: int, ranking: str) -> np.ndarray:
    """Each column's first min(n, images) rows by a ranking of RANKING_KEYS ('top': largest first, 'bottom':
    smallest first, 'near_zero': smallest |value| first), ties by row (image id order): (columns, depth) rows."""
    key_of = RANKING_KEYS[ranking]
    images, columns = values.shape
    depth = min(n, images)
    out = np.zeros((columns, depth), dtype=np.intp)
    for first, rows in _blocks(values) if depth else ():
        key = key_of(rows)
        edge = np.partition(key, depth - 1, axis=1)[:, depth - 1]  # each row's depth-th smallest key
        row, col = np.nonzero(key <= edge[:, None])  # at least depth per row, more where keys tie at the edge
        order = np.lexsort((col, key[row, col], row))
        row, col = row[order], col[order]
        out[first:first + len(rows)] = col[np.searchsorted(row, np.arange(len(rows)))[:, None] + np.arange(depth)]
    return out
