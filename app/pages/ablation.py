"""`/layers/{layer}/ablation`: the network's accuracy on the category and on the rest of the classes with the
layer's selective units silenced, against random groups of as many units (the control) and nothing silenced.

The groups and their per-class tallies are worker.ablate's (python -m worker ablate); the deltas and p are
unitscope.data.interventions.layer_ablation's, which the Python API reads too.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.figures import BLUE, GREY, RED, Figure, base_layout, titled_axis
from app.params import ScoreParams
from app.render import Page
from app.urls import Urls
from unitscope import claim_rules
from unitscope.data import interventions
from unitscope.data.runs import Run, require_category, require_layer, require_run
from unitscope.data.source import Source


class Baseline(BaseModel):
    """The network with nothing ablated, over every image with a class."""

    top1: float | None
    top5: float | None
    n: int
    top1_category: float | None = Field(None, description="over the category's images")
    top1_rest: float | None = Field(None, description="over the other images")


class GroupResult(BaseModel):
    """One ablated group: top-1 accuracy on the category and on the rest, and each one's change from the baseline."""

    name: str
    kind: str = Field(description="selective | random | unit")
    units: list[int]
    top1_category: float | None
    top1_rest: float | None
    delta_category: float | None
    delta_rest: float | None


class AblationContext(BaseModel):
    """`/layers/{layer}/ablation`: what silencing the selective units does, against random groups."""

    run_id: int
    layer: str
    category: str
    categories: list[str]
    available: bool = Field(description="the run has an ablation of this layer for this category")
    selection: str | None = Field(None, description="how the selective group was chosen (SI stat and threshold)")
    n_category: int = 0
    n_rest: int = 0
    baseline: Baseline | None = None
    groups: list[GroupResult] = []
    p: float | None = Field(None, description="one-sided permutation p: random groups whose delta_category is as low "
                            "as the selective group's or lower, (1 + count) / (1 + groups)")
    command: str = Field(description="the worker command that computes it")
    few_groups: str | None = Field(None, description="why p cannot reach the claims' alpha with this few random "
                                   "groups; null with enough")
    hidden: str | None = Field(None, description="stored groups of this layer left out because they were ablated on "
                               "another number of images than the baseline's (an earlier job's --limit), and what to "
                               "run; null when none")


def build(source: Source, layer: str, p: ScoreParams) -> AblationContext:
    """The stored ablation of the layer, summed over the category's classes and the rest."""
    run = require_run(source, p.run)
    require_layer(run, layer)
    require_category(run, p.category)
    return layer_ablation(source, run, layer, p.category, p.si_stat, p.threshold)


def layer_ablation(source: Source, run: Run, layer: str, category: str, si_stat: str,
                   threshold: float) -> AblationContext:
    """The ablation of a layer's units selective for a category at a specification (the `important` claim's too)."""
    command = (f"python -m worker ablate --db DB --layer {layer} --category {category} --si-stat {si_stat} "
               f"--threshold {threshold:g}")
    found = interventions.layer_ablation(source, run, layer, category, si_stat, threshold)
    hidden = interventions.hidden_ablations(source, run, layer)
    note = None
    if hidden:
        current = interventions.ablation_groups(source, run, layer)
        counts = ", ".join(f"{n} on {images:,} images" for images, n in hidden.items())
        baseline = f"has {current[0].images:,} images" if current else "is missing"
        note = (f"{sum(hidden.values())} stored groups of {layer} ({counts}) are left out: the latest ablate job's "
                f"baseline {baseline}, and a group is compared only on its baseline's images; ablate them again with "
                "one --limit")
    context = AblationContext(run_id=run.run_id, layer=layer, category=category, categories=list(run.categories),
                              available=found is not None, command=command, hidden=note)
    if found is None:
        return context
    context.selection = f"SI ({si_stat}) ≥ {threshold:g}: {len(found.groups[0].units)} units"
    context.n_category, context.n_rest, context.p = found.n_category, found.n_rest, found.p
    context.baseline = Baseline(top1=found.top1, top5=found.top5, n=found.n, top1_category=found.top1_category,
                                top1_rest=found.top1_rest)
    random = sum(g.kind == "random" for g in found.groups)
    if random < claim_rules.MIN_RANDOM_GROUPS:
        context.few_groups = (f"{random} random groups: a permutation p over them cannot fall below "
                              f"{1 / (1 + random):.3g}, so it cannot reach {claim_rules.ALPHA:g} with fewer than "
                              f"{claim_rules.MIN_RANDOM_GROUPS}, and the claim cannot tell (python -m worker ablate "
                              "--groups 20)")
    context.groups = [GroupResult(name=g.name, kind=g.kind, units=list(g.units), top1_category=g.top1_category,
                                  top1_rest=g.top1_rest, delta_category=g.delta_category, delta_rest=g.delta_rest)
                      for g in found.groups]
    return context


def ablation_figure(ctx: AblationContext) -> Figure:
    """Each group's change in top-1 accuracy on the category against on the rest; the diagonal is 'no more on the
    category than elsewhere'."""
    data: list[dict[str, Any]] = []
    for kind, name, color, size in (("unit", "single units", BLUE, 5), ("random", "random groups", GREY, 9),
                                    ("selective", "selective units", RED, 14)):
        rows = [g for g in ctx.groups if g.kind == kind and g.delta_category is not None and g.delta_rest is not None]
        if rows:
            data.append({"type": "scatter", "mode": "markers", "name": f"{name} ({len(rows)})",
                         "x": [g.delta_rest for g in rows], "y": [g.delta_category for g in rows],
                         "text": [g.name for g in rows], "marker": {"color": color, "size": size, "opacity": 0.8},
                         "hovertemplate": "%{text}<br>rest %{x:+.1%}<br>category %{y:+.1%}<extra></extra>"})
    values = [v for g in ctx.groups for v in (g.delta_category, g.delta_rest) if v is not None] or [0.0]
    lo, hi = min(min(values), 0.0), max(max(values), 0.0)
    diagonal = {"type": "line", "x0": lo, "y0": lo, "x1": hi, "y1": hi, "line": {"color": "#444", "dash": "dash"}}
    return {"data": data, "layout": base_layout(
        height=380, shapes=[diagonal],
        xaxis=titled_axis("change in top-1 accuracy on the other classes", tickformat="+.0%"),
        yaxis=titled_axis(f"change in top-1 accuracy on {ctx.category}", tickformat="+.0%"))}


def _extras(ctx: AblationContext, urls: Urls) -> dict[str, Any]:
    return {"figure": ablation_figure(ctx) if ctx.available else None}


PAGE: Page[AblationContext] = Page("ablation.html", lambda ctx, urls: urls.ablation(ctx.layer), _extras)
