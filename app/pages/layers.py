"""`/layers`: every layer of a run, its selective units against the rest (no AUROC or null: see the layer page)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.figures import BLUE, GREY, RED, Figure, base_layout, titled_axis
from app.pages.common import Groups, ScoreInfo, layer_groups, score_info
from app.params import ScoreParams
from app.render import Page
from app.urls import Urls
from unitscope.data.runs import find_run
from unitscope.data.source import Source


class LayerSummary(ScoreInfo):
    """One layer on `/layers`: the study's claim checked layer by layer, with the view's parameters."""

    name: str
    units: int
    position: int
    selective: int = Field(description="units with si >= threshold")
    selective_bottom: int = Field(description="selective units with in_bottom >= base_rate")
    groups: Groups


def build(source: Source, p: ScoreParams) -> list[LayerSummary]:
    """Per layer, the selective units against the rest."""
    run = find_run(source, p.run)
    if run is None:
        return []
    info = score_info(run, p)
    return [
        LayerSummary(
            **info.model_dump(), name=lg.name, units=lg.units, position=lg.position,
            selective=lg.groups.selective.units, selective_bottom=lg.groups.selective.with_bottom_at_base_rate,
            groups=lg.groups,
        )
        for lg in layer_groups(source, run, p)
    ]


def layers_chart(layers: list[LayerSummary]) -> Figure:
    """Per layer: selective units, and those of them with at least the base rate in their bottom k."""
    names = [s.name for s in layers]
    data = [
        {"type": "bar", "name": "selective units", "x": names, "y": [s.selective for s in layers],
         "marker": {"color": RED}},
        {"type": "bar", "name": "… with in_bottom ≥ base rate", "x": names,
         "y": [s.selective_bottom for s in layers], "marker": {"color": BLUE}},
    ]
    layout = base_layout(barmode="group", xaxis=titled_axis("layer"), yaxis=titled_axis("units"), height=380)
    return {"data": data, "layout": layout}


def layers_shares(layers: list[LayerSummary]) -> Figure:
    """Per layer, the share of units with in_bottom >= base rate: selective units against the rest."""
    names = [s.name for s in layers]
    data = [
        {"type": "bar", "name": f"{label} units", "x": names,
         "y": [getattr(s.groups, group).share_with_bottom_at_base_rate for s in layers],
         "customdata": [getattr(s.groups, group).units for s in layers],
         "hovertemplate": f"%{{x}}: %{{y:.1%}} of %{{customdata}} {label} units<extra></extra>",
         "marker": {"color": color}}
        for group, label, color in (("selective", "selective", RED), ("rest", "other", GREY))
    ]
    layout = base_layout(barmode="group", xaxis=titled_axis("layer"),
                     yaxis=titled_axis("share with in_bottom ≥ base rate", tickformat=".0%", range=[0, 1]), height=340)
    return {"data": data, "layout": layout}


def _extras(ctx: list[LayerSummary], urls: Urls) -> dict[str, Any]:
    """The chart of selective units per layer, and the selective-against-rest chart of shares."""
    return {"figure": layers_chart(ctx), "shares_figure": layers_shares(ctx)}


PAGE: Page[list[LayerSummary]] = Page("layers.html", lambda ctx, urls: urls.layers(), _extras)
