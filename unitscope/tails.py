"""The category's tails: the share of its images beyond the rest's lower or upper decile (claim_rules.TAIL), per unit.

The decile is numpy's default (linear) quantile of the rest, interpolated in the responses' dtype (float32), as
np.quantile does for a Python float q: the server, publication and older DBs all take it so, and a category value at
the decile's edge counts the same in each. The server computes it with np.quantile over the layer's matrix;
publication, which has each column's sorted order already (stats.sorted_runs, for AUROC and Baek's tests), picks the
rest's two order statistics from it and interpolates as numpy does, with no copy and partition of the rest per
category and side: with the six built-in categories that partition was 39% of the layer controls' time at 100,000
images (2026-12-04).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from unitscope.claim_rules import TAIL
from unitscope.stats import SortedRuns, _labels, _values


def tail_shares(values: npt.ArrayLike, labels: npt.ArrayLike, *, upper: bool) -> np.ndarray:
    """Per unit, the share of the category's images beyond the rest's TAIL quantile: (u,).

    upper: above the rest's upper decile, else below its lower decile. values: (n, u); labels:
    (n,) bool. NaN for every unit when either group is empty.
    """
    return _tails(values, labels, (upper,), None)[0]


def both_tail_shares(values: npt.ArrayLike, labels: npt.ArrayLike,
                     runs: SortedRuns | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(tail_shares(upper=False), tail_shares(upper=True)); runs: stats.sorted_runs(values), when the caller has
    them (the same numbers, from the sorted order)."""
    below, above = _tails(values, labels, (False, True), runs)
    return below, above


def _tails(values: npt.ArrayLike, labels: npt.ArrayLike, sides: tuple[bool, ...],
           runs: SortedRuns | None) -> list[np.ndarray]:
    values = _values(values)
    labels = _labels(labels, values.shape[0])
    if labels.all() or not labels.any():
        return [np.full(values.shape[1], np.nan) for _ in sides]
    # One Python float q per side: numpy then interpolates in the values' dtype, where a list of q's would
    # interpolate in float64 and move the comparisons' edge.
    qs = [1 - TAIL if upper else TAIL for upper in sides]
    if runs is None:
        rest = values[~labels]
        edges = [np.quantile(rest, q, axis=0) for q in qs]
    else:
        edges = rest_quantiles(values, labels, runs, qs)
    category = values[labels]
    return [((category > edge) if upper else (category < edge)).mean(axis=0) for upper, edge in zip(sides, edges)]


def rest_quantiles(values: np.ndarray, labels: np.ndarray, runs: SortedRuns, qs: Sequence[float]) -> list[np.ndarray]:
    """np.quantile(values[~labels], q, axis=0) for each Python float q, to the bit, from the columns' sorted order.

    numpy's linear method: the virtual index (m - 1) q among the rest's m values, its two neighbouring order
    statistics (the last twice at its end), and their lerp in the values' dtype, from the upper one when the weight is
    0.5 or more (numpy's _lerp). tests/test_controls.py holds it to np.quantile.
    """
    m = int((~labels).sum())
    picks = []
    for q in qs:
        virtual = (m - 1) * q  # numpy's virtual index for its linear method, in [0, m - 1] for q in [0, 1]
        if virtual >= m - 1:  # numpy takes the last value twice, at index -1, so its weight is virtual + 1
            picks.append((m - 1, m - 1, virtual + 1))
        else:
            below = math.floor(virtual)
            picks.append((below, below + 1, virtual - below))
    c = values.shape[1]
    wanted = np.array([(first + 1, second + 1) for first, second, _ in picks])  # counts of the rest, 1-based
    ends = np.empty((len(qs), 2, c), values.dtype)
    for j in range(c):
        # The rest's count at each sorted position rises at each of its values: the first position reaching k + 1 holds
        # its k-th. A cumsum and a search: 6x the copy of the rest's rows at 100,000 images.
        seen = np.cumsum(~labels[runs.order[j]], dtype=np.int32)
        ends[:, :, j] = values[runs.order[j][np.searchsorted(seen, wanted)], j]
    scalar, edges = values.dtype.type, []
    for (_, _, weight), (a, b) in zip(picks, ends):
        step = b - a
        edges.append(b - step * scalar(1 - weight) if weight >= 0.5 else a + step * scalar(weight))
    return edges
