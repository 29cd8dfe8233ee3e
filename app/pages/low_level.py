"""The low-level test, a section of the unit and layer pages: is a unit's selectivity explained by the images'
low-level statistics?

For a unit, on the category's images only:
- the group among its top k (by pos_stat) against the group among its bottom k (by neg_stat), on
  each statistic of `image_stats`: each group's median, Cliff's delta (the positive group's
  dominance, -1..1) and a two-sided Mann–Whitney p-value;
- r2_cv: the share of the variance of its response (on si_stat) within the category that a linear
  model of the five statistics predicts, cross-validated so that five predictors cannot fit noise.

Over a layer, the distribution of r2_cv over its selective units decides the claim that their
selectivity is "not explained by low-level statistics" (unitscope.claim_rules.R2_THRESHOLD).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from app.data import low_level as reads
from app.params import ScoreParams
from unitscope.claim_rules import R2_THRESHOLD, low_level_verdict
from unitscope.data.runs import Run
from unitscope.data.source import Source
from unitscope.stats import cliffs_delta, mann_whitney_p, r2_cv


class BoxSummary(BaseModel):
    """One group's values of a statistic, as a box plot draws them."""

    n: int
    min: float
    q1: float
    q3: float
    max: float


class LowLevelStat(BaseModel):
    """A unit's category images in its top k against those in its bottom k, on one low-level statistic."""

    name: str = Field(description="a column of image_stats: luminance, contrast, saturation, colourfulness, hf_energy")
    median_positive: float | None = Field(description="median over the category images among the top k")
    median_negative: float | None = Field(description="median over the category images among the bottom k")
    effect_size: float | None = Field(
        description="Cliff's delta, positive group against negative: +1 when every positive image has the higher value"
    )
    p: float | None = Field(
        description="two-sided Mann–Whitney U (normal approximation, tie- and continuity-corrected)"
    )
    positive: BoxSummary | None
    negative: BoxSummary | None


class UnitLowLevel(BaseModel):
    """Is the unit low-level? Its category images compared on the images' low-level statistics."""

    images: int = Field(description="category images")
    positive: int = Field(description="category images among the unit's top k (pos_stat)")
    negative: int = Field(description="category images among the unit's bottom k (neg_stat)")
    stats: list[LowLevelStat]
    r2_cv: float | None = Field(
        description="cross-validated R² (5 folds) of a linear model of the five statistics predicting the unit's "
        "response (si_stat) within the category; null under 20 category images"
    )


class LayerLowLevel(BaseModel):
    """r2_cv over the layer's selective units (si >= threshold): the claims page's `low_level` claim."""

    units: list[int] = Field(description="the selective units with an r2_cv")
    values: list[float] = Field(description="their r2_cv, in the same order")
    r2_cv_median: float | None
    r2_cv_p90: float | None
    threshold: float = Field(description="the claim holds when r2_cv_median is below it")
    verdict: bool | None = Field(
        description="true: 'not explained by low-level statistics' holds (median r2_cv < threshold); "
        "null without selective units"
    )


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
        threshold=R2_THRESHOLD, verdict=None if median is None else low_level_verdict(median) == "holds",
    )


def for_unit(source: Source, run: Run, layer: str, unit: int, p: ScoreParams, k: int) -> UnitLowLevel | None:
    """The unit's `low_level` for the page's parameters and the k in use; None when the run has no image_stats."""
    stats = reads.image_stats(source, run)
    if stats is None:
        return None
    cat = reads.category_responses(source, run, layer, unit, category=p.category, si_stat=p.si_stat,
                                   pos_stat=p.pos_stat, neg_stat=p.neg_stat, k=k)
    return compare_groups(stats.names, stats.values[cat.image_ids], cat.response, cat.in_top, cat.in_bottom)


def for_layer(
    source: Source, run: Run, layer: str, selective: list[int], p: ScoreParams
) -> LayerLowLevel | None:
    """r2_cv over the layer's `selective` units; None when the run has no image_stats. Cached per parameters."""
    stats = reads.image_stats(source, run)
    if stats is None:
        return None
    key = (run.run_id, layer, p.category, "low_level", p.si_stat, tuple(selective))

    def compute() -> LayerLowLevel:
        responses = reads.layer_category_responses(source, run, layer, selective, p.si_stat, p.category)
        return summarise_layer({u: r2_cv(stats.values[ids], y) for u, (ids, y) in responses.items()})

    return source.cached(key, compute)
