"""`/compare`: two runs side by side, by relative depth, and (same model) each unit's SI in a against b."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.figures import (
    BLUE,
    DEPTH_AXIS,
    GREY,
    RED,
    SHARE_AXIS,
    Figure,
    base_layout,
    interval_bars,
    titled_axis,
)
from app.pages.common import (
    LayerShares,
    RunInfo,
    layer_shares,
    resolve_k,
    run_info,
    scores,
)
from app.params import CompareParams, ScoreParams
from app.render import Page
from app.urls import Urls
from unitscope import claim_rules, stats
from unitscope.data.runs import Run, require_category, runs
from unitscope.data.source import Source
from unitscope.errors import NotFound


class CompareSide(BaseModel):
    """One of the two runs: what it is, and its layers' shares by depth."""

    run: RunInfo
    n_category: int = Field(description="the run's images in the category")
    k: int = Field(description="the k in use for this run: the one given, or this run's default")
    k_reason: str = Field(description="how this run's k was chosen, for the page")
    warnings: list[str] = Field(description="what makes this run's numbers hard to read, e.g. overlapping top and "
                                "bottom")
    base_rate: float = Field(description="min(k, images) x category share, this run's own")
    layers: list[LayerShares]


class UnitPairs(BaseModel):
    """Each unit's SI in run a against run b, for one layer of one model."""

    layer: str
    units: list[int]
    si_a: list[float | None]
    si_b: list[float | None]
    pairs: int = Field(description="units with an SI in both runs: the correlations' n")
    spearman: float | None
    pearson: float | None


class CompareContext(BaseModel):
    """`/compare`: the parameters, both runs, and the unit pairs when the runs share a model."""

    category: str
    k: int | None = Field(description="the k given; null: each run uses its own default (see a.k, b.k)")
    pos_stat: str
    neg_stat: str
    si_stat: str
    threshold: float
    a: CompareSide
    b: CompareSide
    same_model: bool = Field(description="both runs ran the same model, so their units pair one to one")
    common_layers: list[str] = Field(description="layers both runs recorded with the same unit count")
    scatter: UnitPairs | None = Field(description="null unless same_model")
    runs: list[RunInfo] = Field(description="every complete run, the values a and b take")


def _pick(all_runs: list[Run], a: int | None, b: int | None) -> tuple[Run, Run]:
    """a: the asked run or the latest; b: the asked run or the newest other one (a itself if it is alone)."""
    if not all_runs:
        raise NotFound("the database has no complete run yet")
    by_id = {r.run_id: r for r in all_runs}
    for run_id in (a, b):
        if run_id is not None and run_id not in by_id:
            raise NotFound(f"no complete run {run_id}")
    run_a = by_id[a] if a is not None else all_runs[0]
    if b is not None:
        return run_a, by_id[b]
    return run_a, next((r for r in all_runs if r.run_id != run_a.run_id), run_a)


def _side(source: Source, run: Run, p: ScoreParams) -> CompareSide:
    n_category = require_category(run, p.category)
    k, _, k_reason = resolve_k(p, run.images)
    overlap = claim_rules.overlap_warning(k, run.images)
    return CompareSide(run=run_info(run), n_category=n_category, k=k, k_reason=f"run {run.run_id}: {k_reason}",
                       warnings=[] if overlap is None else [f"run {run.run_id}: {overlap}"],
                       base_rate=claim_rules.base_rate(k, run.images, n_category), layers=layer_shares(source, run, p))


def _pairs(source: Source, a: Run, b: Run, layer: str, p: CompareParams) -> UnitPairs:
    si_a, si_b = ({r.unit: r.si for r in scores(
        source, run, layer, _score(p, run), resolve_k(_score(p, run), run.images)[0]).rows} for run in (a, b))
    units = sorted(si_a)
    xs, ys = [si_a[u] for u in units], [si_b[u] for u in units]
    return UnitPairs(layer=layer, units=units, si_a=xs, si_b=ys, pairs=len(stats.complete_pairs(xs, ys)[0]),
                     spearman=stats.spearman(xs, ys), pearson=stats.pearson(xs, ys))


def _score(p: CompareParams, run: Run) -> ScoreParams:
    return ScoreParams(run=run.run_id, **p.model_dump(exclude={"a", "b", "layer"}))


def build(source: Source, p: CompareParams) -> CompareContext:
    """Both runs' layer shares by relative depth; with one model, the units' SI of `layer` paired."""
    all_runs = runs(source)
    a, b = _pick(all_runs, p.a, p.b)
    common = [name for name, (units, _, _) in a.layers.items() if b.layers.get(name, (None,))[0] == units]
    same_model = a.model == b.model
    if p.layer is not None and not same_model:
        raise NotFound(f"runs {a.run_id} and {b.run_id} ran different models ({a.model} and {b.model}): their units do "
                       "not pair, so there is no layer to pair them on; without ?layer= their layers line up by depth")
    if p.layer is not None and p.layer not in common:
        raise NotFound(f"layer {p.layer!r} is not in both runs; both have {', '.join(common) or 'none'}")
    # The claims page's default layer (the study's relative depth), so both pages open on the same layer.
    layer = p.layer if p.layer is not None else (claim_rules.default_layer(common, a.network)[0] if common else None)
    return CompareContext(
        **p.model_dump(exclude={"a", "b", "layer"}),
        a=_side(source, a, _score(p, a)), b=_side(source, b, _score(p, b)),
        same_model=same_model, common_layers=common,
        scatter=_pairs(source, a, b, layer, p) if same_model and layer is not None else None,
        runs=[run_info(r) for r in all_runs],
    )


def _label(side: CompareSide) -> str:
    return f"run {side.run.run_id} · {side.run.model}"


def _line(side: CompareSide, y: list[float | None], name: str, color: str, dash: str = "solid",
          intervals: list[tuple[float, float] | None] | None = None) -> dict[str, Any]:
    line = {
        "type": "scatter", "mode": "lines+markers", "name": name,
        "x": [s.depth for s in side.layers], "y": y, "text": [s.layer for s in side.layers],
        "hovertemplate": "%{text}<br>depth %{x:.2f}<br>%{y:.1%}<extra>" + name + "</extra>",
        "line": {"color": color, "dash": dash}, "marker": {"color": color, "size": 7},
    }
    if intervals is not None:
        line["error_y"] = interval_bars(y, intervals, color)
    return line


def selective_by_depth(ctx: CompareContext) -> Figure:
    """Both runs' share of selective units, layer by layer on the common depth axis."""
    data = [_line(side, [s.share_selective for s in side.layers], _label(side), color)
            for side, color in ((ctx.a, RED), (ctx.b, BLUE))]
    return {"data": data, "layout": base_layout(xaxis=DEPTH_AXIS, yaxis=SHARE_AXIS, height=360)}


def bottom_by_depth(ctx: CompareContext) -> Figure:
    """Both runs' share with in_bottom >= base rate: among the selective units (solid) and the rest (dotted), with
    95% Wilson intervals."""
    data = []
    for side, color in ((ctx.a, RED), (ctx.b, BLUE)):
        data.append(_line(side, [s.share_selective_bottom for s in side.layers], f"{_label(side)}: selective", color,
                          intervals=[s.ci_selective_bottom for s in side.layers]))
        data.append(_line(side, [s.share_rest_bottom for s in side.layers], f"{_label(side)}: rest", color, "dot",
                          intervals=[s.ci_rest_bottom for s in side.layers]))
    return {"data": data, "layout": base_layout(xaxis=DEPTH_AXIS, yaxis=SHARE_AXIS, height=400)}


def si_pairs(pairs: UnitPairs, a: int, b: int, unit_urls: list[str]) -> Figure:
    """Each unit's SI in run a (x) against run b (y), with the diagonal; a click opens the unit in run a.

    `unit_urls[i]` is the page of pairs.units[i] in run a.
    """
    kept = [(u, x, y, url) for u, x, y, url in zip(pairs.units, pairs.si_a, pairs.si_b, unit_urls)
            if x is not None and y is not None]
    data = [{
        "type": "scatter", "mode": "markers", "name": f"{pairs.pairs} units",
        "x": [x for _, x, _, _ in kept], "y": [y for _, _, y, _ in kept],
        "customdata": [[u, url] for u, _, _, url in kept],
        "hovertemplate": "unit %{customdata[0]}<br>SI a %{x:.3f}<br>SI b %{y:.3f}<extra></extra>",
        "marker": {"color": GREY, "size": 6, "opacity": 0.7},
    }]
    diagonal = {"type": "line", "x0": 0, "y0": 0, "x1": 1, "y1": 1, "xref": "x", "yref": "y",
                "line": {"color": "#444", "width": 1, "dash": "dash"}}
    return {"data": data, "layout": base_layout(
        xaxis=titled_axis(f"SI in run {a}", range=[0, 1]), yaxis=titled_axis(f"SI in run {b}", range=[0, 1]),
        shapes=[diagonal], height=480, width=520,
    )}


def _compare_extras(ctx: CompareContext, urls: Urls) -> dict[str, Any]:
    """The curves by depth, the unit pairs' scatter, and links into each run."""
    extras: dict[str, Any] = {
        "selective_figure": selective_by_depth(ctx), "bottom_figure": bottom_by_depth(ctx),
        "run_urls": {side.run.run_id: urls.with_params(run=side.run.run_id) for side in (ctx.a, ctx.b)},
    }
    if ctx.scatter is not None:
        in_a = extras["run_urls"][ctx.a.run.run_id]
        unit_urls = [in_a.unit(ctx.scatter.layer, u) for u in ctx.scatter.units]
        extras["scatter_figure"] = si_pairs(ctx.scatter, ctx.a.run.run_id, ctx.b.run.run_id, unit_urls)
    return extras


PAGE: Page[CompareContext] = Page(
    "compare.html",
    lambda ctx, urls: urls.compare(ctx.a.run.run_id, ctx.b.run.run_id, ctx.scatter.layer if ctx.scatter else None),
    _compare_extras,
)
