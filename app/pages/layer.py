"""`/layers/{layer}`: the study's figure 2 for one layer, every unit's scores with the layer's controls."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from app.data import layer_tests
from app.data.db import Reader
from app.figures import (
    GREY,
    RED,
    Figure,
    base_layout,
    dashed_line,
    percent,
    titled_axis,
)
from app.pages import low_level
from app.pages.common import Group, Groups, ScoreInfo, groups, score_info, scores
from app.pages.low_level import LayerLowLevel
from app.pages.measures import LayerMeasures, UnitMeasures, for_layer, unit_fields
from app.params import ScoreParams
from app.render import Page, number
from app.urls import Urls
from unitscope import claim_rules, stats
from unitscope.data.labels import layer_labels
from unitscope.data.measures import unit_measures
from unitscope.data.runs import require_layer, require_run
from unitscope.data.scores import auroc
from unitscope.data.split_half import Halves, unit_halves


class _UnitScores(BaseModel):
    """A unit's point of the scatter, its chance levels and its split-half SI: a unit row's first fields."""

    unit: int
    si: float | None = Field(description="selectivity index; null when the unit's response never varies")
    in_top: int = Field(description="category images among the unit's k strongest positive")
    in_bottom: int = Field(description="category images among the unit's k strongest negative")
    selective: bool = Field(description="si >= threshold")
    p_top: float = Field(description="P(in_top this high or higher) under random labels (hypergeometric)")
    p_bottom: float = Field(description="P(in_bottom this high or higher) under random labels (hypergeometric)")
    q_top: float = Field(description="Benjamini-Hochberg q-value of p_top across the layer's units")
    q_bottom: float = Field(description="Benjamini-Hochberg q-value of p_bottom across the layer's units")
    overlap: int = Field(0, description="images in both the unit's top k (pos_stat) and its bottom k (neg_stat)")
    bottom_only: int = Field(0, description="images of its bottom k that are not in its top k: min(k, images) - overlap")
    in_bottom_only: int = Field(0, description="category images among bottom_only: inhibited without being excited")
    bottom_only_share: float = Field(0.0, description="in_bottom_only / bottom_only: the category's share among the "
                                     "bottom-only images; 0 without any")
    p_bottom_only: float = Field(1.0, description="P(in_bottom_only this high or higher) for bottom_only images drawn "
                                 "at random from outside the top k (hypergeometric)")
    q_bottom_only: float = Field(1.0, description="Benjamini-Hochberg q-value of p_bottom_only across the layer's "
                                 "units; < 0.05: the bottom-only images are enriched in the category")
    significant_top: bool = Field(description="q_top < 0.05")
    significant_bottom: bool = Field(description="q_bottom < 0.05")
    auroc: float | None = Field(description="AUROC of category against rest on the SI stat (0.5: no preference); "
                                "null when either group has no image")
    si_half_a: float | None = Field(None, description="SI on the even image ids alone (split-half reliability)")
    si_half_b: float | None = Field(None, description="SI on the odd image ids alone")


class UnitScore(UnitMeasures, _UnitScores):
    """One unit's point of the scatter, with its chance levels and the field's other selectivity measures.

    Its fields in the order of the JSON's unit rows and the CSV's columns: the scores, the measures, the label
    (pydantic orders a model's fields from its last base to its first).
    """

    label: str | None = Field(None, description="what most excites and inhibits the unit (its unit page has the "
                              "terms); null for a DB without labels")


class NullStat(BaseModel):
    """One layer-level statistic against its label-permutation null."""

    name: str = Field(description="'selective', 'selective_negative' or 'median_gap'")
    description: str
    observed: float | None = Field(description="null when undefined (the median gap with an empty group)")
    null_mean: float | None
    null_p95: float | None = Field(description="95th percentile of the null")
    p: float | None = Field(description="(1 + #{null >= observed}) / (valid + 1), upper-tailed")
    valid: int = Field(description="permutations where the statistic is defined")


class NullSummary(BaseModel):
    """The label-permutation null of the layer's claims: labels shuffled (same count), SI and counts redone."""

    permutations: int
    seed: int
    stats: list[NullStat]


class SplitHalf(BaseModel):
    """A layer's SI, computed on each half of the images, and how well the halves agree."""

    stat: str = Field(description="the SI stat")
    images_a: int = Field(description="images with an even id (half a)")
    images_b: int = Field(description="images with an odd id (half b)")
    units: int = Field(description="units whose SI is defined in both halves: the correlations' n")
    spearman: float | None = Field(description="Spearman's rho of si_half_a against si_half_b over the units")
    pearson: float | None = Field(description="Pearson's r of the same")


class LayerContext(ScoreInfo):
    """`/layers/{layer}`: the study's figure 2 for one layer, with its controls."""

    layer: str
    units: list[UnitScore]
    selective: int = Field(description="units with si >= threshold")
    source: str = Field(description="'precomputed' (written by the worker) or 'computed' (on demand)")
    groups: Groups
    null: NullSummary | None = Field(description="the label-permutation null; null when the category or the "
                                     "rest has no image")
    low_level: LayerLowLevel | None = Field(description="null when the run has no image_stats")
    split_half: SplitHalf = Field(description="the units' SI on even against odd image ids")
    measures: LayerMeasures | None = Field(None, description="the field's selectivity measures side by side, and the "
                                           "units' tuning shape against published IT values")


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def null_summary(null: layer_tests.Null | None) -> NullSummary | None:
    """The page's null from the stored or computed one."""
    if null is None:
        return None
    return NullSummary(permutations=null.permutations, seed=null.seed, stats=[
        NullStat(name=name, description=description, observed=_finite(observed), null_mean=_finite(mean),
                 null_p95=_finite(p95), p=_finite(p), valid=int(valid))
        for (name, description), (observed, mean, p95, p, valid) in zip(layer_tests.NULL_STATS.items(), null.rows)
    ])


def split_half(halves: Halves, stat: str) -> SplitHalf:
    """How well the two halves' SIs agree over the layer's units."""
    a, b = list(halves.si_a.values()), list(halves.si_b.values())
    return SplitHalf(stat=stat, images_a=halves.images_a, images_b=halves.images_b,
                     units=len(stats.complete_pairs(a, b)[0]), spearman=stats.spearman(a, b),
                     pearson=stats.pearson(a, b))


def build(reader: Reader, name: str, p: ScoreParams, *, permutations: int, seed: int,
          measures: bool = True) -> LayerContext:
    """Every unit's (si, in_top, in_bottom) for the parameters, with the layer's controls.

    measures: also the field's other measures and the tuning shapes (stored by publication; a DB without them
    computes them from the layer's responses, so the claims page, which needs none, leaves them out).
    """
    run = require_run(reader, p.run)
    require_layer(run, name)
    info = score_info(run, p)
    found = scores(reader, run, name, p, info.k)
    halves = unit_halves(reader, run, name, p.category, p.si_stat)
    p_q, ex = found.chance, found.exclusive
    aurocs = auroc(reader, run, name, p.category, p.si_stat)
    found_measures = unit_measures(reader, run, name, p.category, p.si_stat) if measures else None
    per_unit = unit_fields(found_measures) if found_measures else [{}] * len(found.rows)
    null = layer_tests.null(reader, run, name, category=p.category, si_stat=p.si_stat, neg_stat=p.neg_stat,
                            k=info.k, threshold=p.threshold, permutations=permutations, seed=seed)
    fdr = claim_rules.FDR
    labels = layer_labels(reader, run.run_id, name)
    units = [
        UnitScore(
            unit=r.unit, si=r.si, in_top=r.in_top, in_bottom=r.in_bottom,
            selective=claim_rules.selective(r.si, p.threshold), overlap=r.overlap, bottom_only=bottom_only,
            in_bottom_only=r.in_bottom_only, bottom_only_share=share, p_bottom_only=p_only, q_bottom_only=q_only,
            p_top=p_top, p_bottom=p_bottom, q_top=q_top, q_bottom=q_bottom,
            significant_top=q_top < fdr, significant_bottom=q_bottom < fdr, auroc=_finite(aurocs[r.unit]),
            si_half_a=halves.si_a.get(r.unit), si_half_b=halves.si_b.get(r.unit),
            label=labels[r.unit].label if r.unit in labels else None, **per_unit[r.unit],
        )
        for r, p_top, p_bottom, q_top, q_bottom, bottom_only, share, p_only, q_only in zip(
            found.rows, *(p_q[c].tolist() for c in ("p_top", "p_bottom", "q_top", "q_bottom")),
            ex.bottom_only.tolist(), ex.share.tolist(), ex.p.tolist(), ex.q.tolist()
        )
    ]
    selective = [u.unit for u in units if u.selective]
    return LayerContext(
        **info.model_dump(), layer=name, units=units,
        selective=len(selective), source=found.source,
        groups=groups(found, info), null=null_summary(null),
        low_level=low_level.for_layer(reader, run, name, selective, p), split_half=split_half(halves, p.si_stat),
        measures=None if found_measures is None else for_layer(
            np.array([math.nan if r.si is None else r.si for r in found.rows]), aurocs, found_measures, p.threshold,
            p.si_stat),
    )


# The scatter takes the left of the figure; the right holds the marginal histograms of in_bottom.
_SCATTER_DOMAIN, _MARGINAL_DOMAIN = [0.0, 0.78], [0.82, 1.0]
_MARGINAL_BINS = 30


def layer_scatter(ctx: LayerContext, unit_urls: list[str]) -> Figure:
    """The study's figure 2: in_top against in_bottom per unit, selective units in red.

    Beside it, on the same y axis, how in_bottom is distributed in each group (shares of the
    group, so the few selective units compare with the many others). `unit_urls[i]` is the page
    of ctx.units[i], opened by a click on its point.
    """
    groups: dict[bool, list[tuple[UnitScore, str]]] = {True: [], False: []}
    for u, url in zip(ctx.units, unit_urls):
        groups[u.selective].append((u, url))
    top = max(1.0, ctx.base_rate, *(max(u.in_top, u.in_bottom) for u in ctx.units)) if ctx.units else 1.0
    pad = top * 0.04
    bin_size = max(1, math.ceil(top / _MARGINAL_BINS))
    data, marginals = [], []
    for selective, name, color, group in ((False, f"SI < {ctx.threshold:g}", GREY, ctx.groups.rest),
                                          (True, f"SI ≥ {ctx.threshold:g}", RED, ctx.groups.selective)):
        units = groups[selective]
        data.append({
            "type": "scatter",
            "mode": "markers",
            "name": f"{name} ({len(units)})",
            "x": [u.in_top for u, _ in units],
            "y": [u.in_bottom for u, _ in units],
            "customdata": [[u.unit, "n/a" if u.si is None else f"{u.si:.3f}", url] for u, url in units],
            "hovertemplate": "unit %{customdata[0]}<br>SI %{customdata[1]}<br>in_top %{x}"
                             "<br>in_bottom %{y}<extra></extra>",
            "marker": {"color": color, "size": 7, "opacity": 0.75, "line": {"width": 0}},
        })
        median = "n/a" if group.median_in_bottom is None else f"{group.median_in_bottom:g}"
        marginals.append({
            "type": "histogram",
            "name": f"{name}: in_bottom, median {median}",
            "y": [u.in_bottom for u, _ in units],
            "xaxis": "x2",
            "yaxis": "y",
            "histnorm": "probability",
            "ybins": {"start": -0.5, "end": top + 0.5, "size": bin_size},
            "hovertemplate": f"{name}<br>in_bottom %{{y}}: %{{x:.1%}} of the group<extra></extra>",
            "marker": {"color": color, "opacity": 0.55},
            "showlegend": False,
        })
    layout = base_layout(
        xaxis=titled_axis(f"in_top: {ctx.category} images among the top {ctx.k} ({ctx.pos_stat})",
                    range=[-pad, top + pad], domain=_SCATTER_DOMAIN),
        yaxis=titled_axis(f"in_bottom: {ctx.category} images among the bottom {ctx.k} ({ctx.neg_stat})",
                    range=[-pad, top + pad]),
        xaxis2=titled_axis("share of the group", domain=_MARGINAL_DOMAIN, anchor="y", tickformat=".0%"),
        barmode="overlay",
        shapes=[
            dashed_line(ctx.base_rate, ctx.base_rate, 0, 1, "x", "paper"),
            dashed_line(0, 1, ctx.base_rate, ctx.base_rate, "paper", "y"),
        ],
        annotations=[{"x": ctx.base_rate, "y": 1, "xref": "x", "yref": "paper", "yanchor": "bottom",
                      "text": f"base rate {ctx.base_rate:.1f}", "showarrow": False, "font": {"size": 11}}],
        height=560,
    )
    return {"data": data + marginals, "layout": layout}


def layer_r2_histogram(ll: LayerLowLevel) -> Figure:
    """The distribution of r2_cv over the layer's selective units, with the claim's threshold dashed."""
    data = [{
        "type": "histogram", "x": ll.values, "nbinsx": 20, "name": f"selective units ({len(ll.values)})",
        "marker": {"color": RED, "opacity": 0.7},
        "hovertemplate": "r2_cv %{x}<br>%{y} units<extra></extra>",
    }]  # fmt: skip
    layout = base_layout(
        xaxis=titled_axis("r2_cv: within-category variance explained by the five low-level statistics"),
        yaxis=titled_axis("units"), height=260, bargap=0.05,
        shapes=[dashed_line(ll.threshold, ll.threshold, 0, 1, "x", "paper")],
        annotations=[{"x": ll.threshold, "y": 1, "xref": "x", "yref": "paper", "yanchor": "bottom",
                      "text": f"threshold {ll.threshold:g}", "showarrow": False, "font": {"size": 11}}],
    )
    return {"data": data, "layout": layout}


def _group_rows(groups: Groups) -> list[tuple[str, str, str]]:
    """The comparison table, one (label, selective, rest) row per measure, preformatted."""
    measures: list[tuple[str, Callable[[Group], str]]] = [
        ("units", lambda g: number(g.units)),
        ("with in_bottom ≥ base rate", lambda g: number(g.with_bottom_at_base_rate)),
        ("share with in_bottom ≥ base rate", lambda g: percent(g.share_with_bottom_at_base_rate)),
        ("median in_top", lambda g: number(g.median_in_top, 1)),
        ("median in_bottom", lambda g: number(g.median_in_bottom, 1)),
        ("median overlap (in both top and bottom k)", lambda g: number(g.median_overlap, 1)),
        ("median in_bottom_only", lambda g: number(g.median_in_bottom_only, 1)),
        ("median category share of the bottom-only images", lambda g: percent(g.median_bottom_only_share)),
        ("share with bottom-only images enriched (q < 0.05)", lambda g: percent(g.share_with_bottom_only_enriched)),
    ]
    return [(label, show(groups.selective), show(groups.rest)) for label, show in measures]


def _layer_extras(ctx: LayerContext, urls: Urls) -> dict[str, Any]:
    """The scatter, the comparison table's rows and the unit table's rows."""
    # Rows as plain tuples: up to 1,024 of them, and Jinja is slow at attribute lookups.
    unit_urls = [urls.unit(ctx.layer, u.unit) for u in ctx.units]
    rows = [(u.unit, url, -1 if u.si is None else u.si, number(u.si), -1 if u.auroc is None else u.auroc,
             number(u.auroc), -99 if u.d_prime is None else u.d_prime, number(u.d_prime),
             u.in_top, u.p_top, u.q_top, u.significant_top,
             u.in_bottom, u.p_bottom, u.q_bottom, u.significant_bottom, u.selective, u.overlap, u.in_bottom_only,
             u.label or "")
            for u, url in zip(ctx.units, unit_urls)]
    # The table opens sorted by SI, largest first (the selective units lead), as a unit page's prev/next go.
    rows.sort(key=lambda row: (-row[2], row[0]))
    return {"rows": rows, "figure": layer_scatter(ctx, unit_urls), "group_rows": _group_rows(ctx.groups),
            "fdr": claim_rules.FDR,
            "low_level_figure": layer_r2_histogram(ctx.low_level) if ctx.low_level else None}


PAGE: Page[LayerContext] = Page("layer.html", lambda ctx, urls: urls.layer(ctx.layer), _layer_extras)
