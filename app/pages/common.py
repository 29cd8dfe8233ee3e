"""What several pages share: a run as a page shows it, the score parameters resolved once, and each layer's
selective units against the rest (the study's claim, checked layer by layer)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydantic import BaseModel, Field

from app.params import ScoreParams
from unitscope import claim_rules
from unitscope.data.runs import Run, require_category
from unitscope.data.scores import ScoreRow, Scores, layer_scores
from unitscope.data.source import Source
from unitscope.stats import wilson_interval


class CategoryInfo(BaseModel):
    """A category of a run and how many of the run's images belong to it."""

    name: str
    images: int


class RunInfo(BaseModel):
    """One complete run of the worker."""

    run_id: int
    model: str
    weights: str
    weights_sha256: str
    preprocessing: str
    device: str
    dtype: str
    images: int = Field(description="images recorded")
    skipped: int = Field(description="files skipped (see /skipped)")
    n_files: int
    started_at: datetime
    finished_at: datetime | None
    categories: list[CategoryInfo]


class ScoreInfo(BaseModel):
    """The parameters a view was computed with and what follows from them."""

    run_id: int
    category: str
    k: int
    pos_stat: str
    neg_stat: str
    si_stat: str
    threshold: float
    n_images: int
    n_category: int
    base_rate: float = Field(description="min(k, n_images) x category share: the null expectation of in_top")
    categories: list[str] = Field(description="the run's categories, the values ?category= takes")
    k_source: str = Field(description="'given' (?k=) or 'default' (chosen from the run's size)")
    k_reason: str = Field(description="how k was chosen, for the page")
    warnings: list[str] = Field(description="what makes these numbers hard to read, e.g. overlapping top and bottom")


class Group(BaseModel):
    """The layer-level claim for one group of units: how many, how many reach the base rate at the bottom."""

    units: int
    with_bottom_at_base_rate: int = Field(description="units with in_bottom >= base_rate (the study's count)")
    share_with_bottom_at_base_rate: float | None = Field(description="with_bottom_at_base_rate / units; "
                                                         "null for an empty group")
    median_in_top: float | None = Field(description="null for an empty group")
    median_in_bottom: float | None = Field(description="null for an empty group")
    median_overlap: float | None = Field(None, description="median of overlap (images in both the top k and the "
                                         "bottom k); null for an empty group")
    median_in_bottom_only: float | None = Field(None, description="median of in_bottom_only; null for an empty group")
    median_bottom_only_share: float | None = Field(None, description="median of bottom_only_share, the category's "
                                                   "share among a unit's bottom-only images (0 without any); null "
                                                   "for an empty group")
    with_bottom_only_enriched: int = Field(0, description="units whose bottom-only images (bottom k less the top "
                                           "k: inhibiting without exciting) hold more of the category than chance "
                                           "(q_bottom_only < 0.05)")
    share_with_bottom_only_enriched: float | None = Field(None, description="with_bottom_only_enriched / "
                                                              "units; null for an empty group")


class Groups(BaseModel):
    """The claim for the selective units beside the same numbers for the rest (its control)."""

    selective: Group = Field(description="units with si >= threshold")
    rest: Group = Field(description="every other unit, including those without an SI")


class LayerShares(BaseModel):
    """One layer of a run under one category: how many units are selective, and how two-sided."""

    layer: str
    position: int = Field(description="the model's own depth index of the layer")
    depth: float = Field(description="relative depth, 0 (first layer of the run) to 1 (last): i / (layers - 1)")
    units: int
    selective: int = Field(description="units with si >= threshold")
    selective_bottom: int = Field(description="selective units with in_bottom >= base rate")
    rest_bottom: int = Field(description="the other units (si < threshold or undefined) with in_bottom >= base rate")
    share_selective: float = Field(description="selective / units")
    share_selective_bottom: float | None = Field(description="selective_bottom / selective; null without one")
    share_rest_bottom: float | None = Field(description="rest_bottom / (units - selective); null without one")
    ci_selective_bottom: tuple[float, float] | None = Field(
        description="95% Wilson interval of share_selective_bottom (wide when few units are selective)")
    ci_rest_bottom: tuple[float, float] | None = Field(description="95% Wilson interval of share_rest_bottom")


def run_info(run: Run) -> RunInfo:
    """What a page shows of a run."""
    return RunInfo(
        run_id=run.run_id, model=run.model, weights=run.weights, weights_sha256=run.weights_sha256,
        preprocessing=run.preprocessing, device=run.device, dtype=run.dtype, images=run.images,
        skipped=run.skipped, n_files=run.n_files, started_at=run.started_at, finished_at=run.finished_at,
        categories=[CategoryInfo(name=n, images=c) for n, c in run.categories.items()],
    )


def resolve_k(p: ScoreParams, n_images: int) -> tuple[int, str, str]:
    """The k a view uses, where it came from ('given' or 'default') and why, for the page."""
    if p.k is not None:
        return p.k, "given", f"k = {p.k}, as given"
    k, reason = claim_rules.default_k(max(n_images, 1))
    return k, "default", reason


def score_info(run: Run, p: ScoreParams) -> ScoreInfo:
    """The view's parameters with k resolved once, and the warnings that follow from them."""
    n_category = require_category(run, p.category)
    k, k_source, k_reason = resolve_k(p, run.images)
    warnings = [w for w in (claim_rules.overlap_warning(k, run.images), _empty_category(run, p.category, n_category))
                if w is not None]
    return ScoreInfo(
        run_id=run.run_id, category=p.category, k=k, pos_stat=p.pos_stat, neg_stat=p.neg_stat,
        si_stat=p.si_stat, threshold=p.threshold, n_images=run.images, n_category=n_category,
        base_rate=claim_rules.base_rate(k, run.images, n_category), categories=list(run.categories),
        k_source=k_source, k_reason=k_reason, warnings=warnings,
    )


def _empty_category(run: Run, category: str, n_category: int) -> str | None:
    """A warning when the category has no image in the run (or every image is in it): no unit has an SI."""
    if 0 < n_category < run.images:
        return None
    which = "none of" if n_category == 0 else "all"
    return (f"{which} the run's {run.images:,} images are in category {category}: an SI compares the category with the "
            "rest, so no unit has one, and nothing here is selective for it")


def scores(source: Source, run: Run, layer: str, p: ScoreParams, k: int) -> Scores:
    """The layer's scores for a page's parameters (unitscope.data.scores.layer_scores, the API's too)."""
    return layer_scores(source, run, layer, category=p.category, k=k, si_stat=p.si_stat, pos_stat=p.pos_stat,
                        neg_stat=p.neg_stat)


def _median(values: list[int] | list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _group(rows: list[ScoreRow], shares: list[float], qs: list[float], info: ScoreInfo) -> Group:
    at_base_rate = sum(r.in_bottom >= info.base_rate for r in rows)
    enriched = sum(claim_rules.enriched_exclusively(q) for q in qs)
    return Group(
        units=len(rows), with_bottom_at_base_rate=at_base_rate,
        share_with_bottom_at_base_rate=at_base_rate / len(rows) if rows else None,
        median_in_top=_median([r.in_top for r in rows]), median_in_bottom=_median([r.in_bottom for r in rows]),
        median_overlap=_median([r.overlap for r in rows]),
        median_in_bottom_only=_median([r.in_bottom_only for r in rows]),
        median_bottom_only_share=_median(shares),
        with_bottom_only_enriched=enriched,
        share_with_bottom_only_enriched=enriched / len(rows) if rows else None,
    )


def groups(found: Scores, info: ScoreInfo) -> Groups:
    """The selective units and the rest (at info.threshold): counts, in_bottom >= base rate (count, share), median
    in_top and in_bottom, and the exclusive test on the bottom-only images (unitscope.data.scores.exclusive)."""
    rows = found.rows
    ex = found.exclusive
    chosen = [claim_rules.selective(r.si, info.threshold) for r in rows]
    parts = {side: [i for i, c in enumerate(chosen) if c == side] for side in (True, False)}
    return Groups(**{
        name: _group([rows[i] for i in parts[side]], [float(ex.share[i]) for i in parts[side]],
                     [float(ex.q[i]) for i in parts[side]], info)
        for name, side in (("selective", True), ("rest", False))
    })


@dataclass(frozen=True)
class LayerGroups:
    """One layer of a run, in depth order, with its groups under one parameter set."""

    name: str
    units: int
    position: int
    depth: float  # relative depth in the network: 0 for its first layer, 1 for its last
    groups: Groups


def layer_groups(source: Source, run: Run, p: ScoreParams) -> list[LayerGroups]:
    """Every layer of the run, in depth order, its units grouped under the parameters (p.run is not read).

    The one computation behind `/layers`, `/categories` and `/compare`.
    """
    info = score_info(run, p)
    return [
        LayerGroups(name, units, position, run.depth(name), groups(scores(source, run, name, p, info.k), info))
        for name, (units, position, _) in run.layers.items()
    ]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def layer_shares(source: Source, run: Run, p: ScoreParams) -> list[LayerShares]:
    """Every layer's shares by relative depth (for `/categories` and `/compare`)."""
    result = []
    for lg in layer_groups(source, run, p):
        selective, selective_bottom = lg.groups.selective.units, lg.groups.selective.with_bottom_at_base_rate
        rest_bottom = lg.groups.rest.with_bottom_at_base_rate
        result.append(LayerShares(
            layer=lg.name, position=lg.position, depth=lg.depth, units=lg.units,
            selective=selective, selective_bottom=selective_bottom, rest_bottom=rest_bottom,
            share_selective=selective / lg.units, share_selective_bottom=_share(selective_bottom, selective),
            share_rest_bottom=_share(rest_bottom, lg.units - selective),
            ci_selective_bottom=wilson_interval(selective_bottom, selective),
            ci_rest_bottom=wilson_interval(rest_bottom, lg.units - selective),
        ))
    return result
