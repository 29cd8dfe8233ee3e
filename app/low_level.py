"""Is a unit low-level? Its category images compared on the images' low-level statistics (numpy).

For a unit, on the category's images only:
- the group among its top k (by pos_stat) against the group among its bottom k (by neg_stat), on
  each statistic of `image_stats`: each group's median, Cliff's delta (the positive group's
  dominance, -1..1) and a two-sided Mann–Whitney p-value;
- r2_cv: the share of the variance of its response (on si_stat) within the category that a linear
  model of the five statistics predicts, cross-validated so that five predictors cannot fit noise.

Over a layer, the distribution of r2_cv over its selective units decides the claim that their
selectivity is "not explained by low-level statistics" (R2_THRESHOLD).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np

from app import low_level_queries
from app.db import Reader
from app.models import BoxSummary, LayerLowLevel, LowLevelStat, UnitLowLevel
from app.params import ScoreParams
from app.queries import Run

FOLDS: Final = 5
SEED: Final = 0  # the folds are a fixed permutation, so r2_cv is reproducible
# Fewer category images than this and r2_cv is null: each training fold must hold many more
# images than the model's 6 coefficients.
MIN_IMAGES: Final = 20
# The claim "not explained by low-level statistics" holds when the median selective unit's r2_cv is
# below 0.1: the five statistics predict under a tenth of its within-category variance, less than
# Cohen's (1988) "medium" effect for a regression (R² = 0.13). The 90th percentile is given too.
R2_THRESHOLD: Final = 0.1


def cliffs_delta(x: np.ndarray, y: np.ndarray) -> float | None:
    """(#(x_i > y_j) - #(x_i < y_j)) / (len(x) len(y)): +1 when every x exceeds every y; None if a group is empty."""
    if len(x) == 0 or len(y) == 0:
        return None
    ys = np.sort(np.asarray(y, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    below = np.searchsorted(ys, x, side="left")  # y values under each x
    above = len(ys) - np.searchsorted(ys, x, side="right")  # y values over each x
    return float((below.sum() - above.sum()) / (len(x) * len(ys)))


def mann_whitney_p(x: np.ndarray, y: np.ndarray) -> float | None:
    """Two-sided Mann–Whitney U p-value: normal approximation with tie and continuity correction.

    The same as scipy.stats.mannwhitneyu(method="asymptotic"). The groups compared here hold tens to
    hundreds of images, where the approximation is close to the exact test. None if a group is empty.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return None
    values = np.concatenate([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])
    n = n1 + n2
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based rank of each distinct value's first occurrence
    ranks = (first + (counts + 1) / 2)[inverse]  # average ranks, 1-based
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    ties = float((counts.astype(np.float64) ** 3 - counts).sum())
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return 1.0  # every value equal: no evidence either way
    z = max(abs(u - n1 * n2 / 2) - 0.5, 0.0) / math.sqrt(variance)
    return min(1.0, math.erfc(z / math.sqrt(2)))


def r2_cv(x: np.ndarray, y: np.ndarray, folds: int = FOLDS, seed: int = SEED) -> float | None:
    """Cross-validated R² of y on the columns of x: ordinary least squares with an intercept on
    predictors standardised by each training fold, `folds` folds of a fixed random permutation.

    R² = 1 - Σ(y - ŷ)² / Σ(y - ȳ)², with ŷ each image's prediction by the model fitted without its
    fold: about 1 for an exact linear function, about 0 or below for noise. None below MIN_IMAGES
    images or when y never varies.
    """
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    n = len(y)
    total = float(((y - y.mean()) ** 2).sum()) if n else 0.0
    if n < max(MIN_IMAGES, folds) or total <= 0:
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


def _box(values: np.ndarray) -> BoxSummary | None:
    if len(values) == 0:
        return None
    low, q1, q3, high = np.quantile(values, [0.0, 0.25, 0.75, 1.0])
    return BoxSummary(n=len(values), min=float(low), q1=float(q1), q3=float(q3), max=float(high))


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if len(values) else None


def compare_groups(
    names: Sequence[str], stats: np.ndarray, response: np.ndarray, in_top: np.ndarray, in_bottom: np.ndarray
) -> UnitLowLevel:
    """One unit on its category images: `stats` (images x statistics, columns named by `names`), its
    `response` on the SI stat, and whether each image is among its top k / bottom k."""
    positive, negative = stats[in_top], stats[in_bottom]
    rows = [
        LowLevelStat(
            name=name,
            median_positive=_median(positive[:, i]),
            median_negative=_median(negative[:, i]),
            effect_size=cliffs_delta(positive[:, i], negative[:, i]),
            p=mann_whitney_p(positive[:, i], negative[:, i]),
            positive=_box(positive[:, i]),
            negative=_box(negative[:, i]),
        )
        for i, name in enumerate(names)
    ]
    return UnitLowLevel(
        images=len(response), positive=int(in_top.sum()), negative=int(in_bottom.sum()), stats=rows,
        r2_cv=r2_cv(stats, response),
    )


def summarise_layer(r2_by_unit: dict[int, float | None]) -> LayerLowLevel:
    """The distribution of r2_cv over a layer's selective units, and the verdict on the claim."""
    units = sorted(u for u, r2 in r2_by_unit.items() if r2 is not None)
    values = [float(r2_by_unit[u]) for u in units]  # type: ignore[arg-type]
    median = float(np.median(values)) if values else None
    return LayerLowLevel(
        units=units, values=values, r2_cv_median=median,
        r2_cv_p90=float(np.quantile(values, 0.9)) if values else None,
        threshold=R2_THRESHOLD, verdict=None if median is None else median < R2_THRESHOLD,
    )


# ---------------------------------------------------------------------------------------------
# From the DB: a unit page's and a layer page's `low_level`


def for_unit(reader: Reader, run: Run, layer: str, unit: int, p: ScoreParams, k: int) -> UnitLowLevel | None:
    """The unit's `low_level` for the page's parameters and the k in use; None when the run has no image_stats."""
    stats = low_level_queries.image_stats(reader, run)
    if stats is None:
        return None
    cat = low_level_queries.category_responses(reader, run, layer, unit, p, k)
    return compare_groups(stats.names, stats.values[cat.image_ids], cat.response, cat.in_top, cat.in_bottom)


def for_layer(
    reader: Reader, run: Run, layer: str, selective: list[int], p: ScoreParams
) -> LayerLowLevel | None:
    """r2_cv over the layer's `selective` units; None when the run has no image_stats. Cached per parameters."""
    stats = low_level_queries.image_stats(reader, run)
    if stats is None:
        return None
    key = (reader.generation.identity, run.run_id, layer, p.category, "low_level", p.si_stat, tuple(selective))

    def compute() -> LayerLowLevel:
        responses = low_level_queries.layer_category_responses(reader, run, layer, selective, p.si_stat, p.category)
        return summarise_layer({u: r2_cv(stats.values[ids], y) for u, (ids, y) in responses.items()})

    return reader.caches.scores.get_or_compute(key, compute)
