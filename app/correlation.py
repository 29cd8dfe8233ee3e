"""Pearson and Spearman correlations of paired values, skipping pairs with a missing side (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_PAIRS = 3  # below this a correlation says nothing


def complete_pairs(x: Sequence[float | None], y: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs where both values are known, as two float64 arrays."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} against {len(y)}")
    kept = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    if not kept:
        return np.empty(0), np.empty(0)
    xs, ys = zip(*kept)
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    # Each run of equal values: its first and last position in sorted order.
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    ends = np.r_[starts[1:], len(values)] - 1
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends) / 2 + 1, ends - starts + 1)
    return ranks


def pearson(x: Sequence[float | None], y: Sequence[float | None]) -> float | None:
    """Pearson's r over the complete pairs; None with fewer than MIN_PAIRS or a side that never varies."""
    a, b = complete_pairs(x, y)
    if len(a) < MIN_PAIRS:
        return None
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else None


def spearman(x: Sequence[float | None], y: Sequence[float | None]) -> float | None:
    """Spearman's rho over the complete pairs: Pearson's r of their midranks (ties as scipy counts them)."""
    a, b = complete_pairs(x, y)
    if len(a) < MIN_PAIRS:
        return None
    return pearson(midranks(a).tolist(), midranks(b).tolist())
