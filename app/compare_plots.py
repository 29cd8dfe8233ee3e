"""The figures of `/compare` and `/categories`, as plain Plotly dicts like app.plots'."""

from __future__ import annotations

from typing import Any

from app.category_shares import CategoriesContext
from app.compare import CompareContext, CompareSide, UnitPairs
from app.plots import BLUE, GREY, RED, Figure, _axis, _layout  # the house look, shared with app.plots

ORANGE = "#ff7f0e"
# One colour per category on /categories, in the run's order; past ten they repeat.
PALETTE = (RED, BLUE, "#2ca02c", ORANGE, "#9467bd", "#8c564b", "#e377c2", GREY, "#bcbd22", "#17becf")
_DEPTH = _axis("relative depth (first layer 0, last 1)", range=[-0.03, 1.03])
_SHARE = _axis("share of units", tickformat=".1%", rangemode="tozero")  # shares of a few percent need the decimal


def _label(side: CompareSide) -> str:
    return f"run {side.run.run_id} · {side.run.model}"


def _line(side: CompareSide, y: list[float | None], name: str, color: str, dash: str = "solid") -> dict[str, Any]:
    return {
        "type": "scatter", "mode": "lines+markers", "name": name,
        "x": [s.depth for s in side.layers], "y": y, "text": [s.layer for s in side.layers],
        "hovertemplate": "%{text}<br>depth %{x:.2f}<br>%{y:.1%}<extra>" + name + "</extra>",
        "line": {"color": color, "dash": dash}, "marker": {"color": color, "size": 7},
    }


def selective_by_depth(ctx: CompareContext) -> Figure:
    """Both runs' share of selective units, layer by layer on the common depth axis."""
    data = [_line(side, [s.share_selective for s in side.layers], _label(side), color)
            for side, color in ((ctx.a, RED), (ctx.b, BLUE))]
    return {"data": data, "layout": _layout(xaxis=_DEPTH, yaxis=_SHARE, height=360)}


def bottom_by_depth(ctx: CompareContext) -> Figure:
    """Both runs' share with in_bottom >= base rate: among the selective units (solid) and the rest (dotted)."""
    data = []
    for side, color in ((ctx.a, RED), (ctx.b, BLUE)):
        data.append(_line(side, [s.share_selective_bottom for s in side.layers], f"{_label(side)}: selective", color))
        data.append(_line(side, [s.share_rest_bottom for s in side.layers], f"{_label(side)}: rest", color, "dot"))
    return {"data": data, "layout": _layout(xaxis=_DEPTH, yaxis=_SHARE, height=400)}


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
    return {"data": data, "layout": _layout(
        xaxis=_axis(f"SI in run {a}", range=[0, 1]), yaxis=_axis(f"SI in run {b}", range=[0, 1]),
        shapes=[diagonal], height=480, width=520,
    )}


def categories_by_layer(ctx: CategoriesContext) -> Figure:
    """Per category: share of the selective units with in_bottom >= base rate (solid), and of the rest (dotted)."""
    data = []
    for i, c in enumerate(ctx.categories):
        color = PALETTE[i % len(PALETTE)]
        names = [s.layer for s in c.layers]
        for y, suffix, dash in (([s.share_selective_bottom for s in c.layers], "selective", "solid"),
                                ([s.share_rest_bottom for s in c.layers], "rest", "dot")):
            data.append({"type": "scatter", "mode": "lines+markers", "name": f"{c.category}: {suffix}",
                         "x": names, "y": y, "line": {"color": color, "dash": dash}, "marker": {"color": color},
                         "hovertemplate": "%{x}: %{y:.1%}<extra>" + f"{c.category}: {suffix}" + "</extra>"})
    # Two lines per category: the legend goes below, where it has room.
    return {"data": data, "layout": _layout(xaxis=_axis("layer"), yaxis=_SHARE, height=480,
                                            legend={"orientation": "h", "y": -0.2, "x": 0},
                                            margin={"l": 60, "r": 20, "t": 20, "b": 40})}
