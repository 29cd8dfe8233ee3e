"""Plotly figures as plain dicts (data + layout), drawn in the page by static/plotly.min.js.

Plain dicts rather than plotly.graph_objects: a figure object validates every property on
construction, which costs more than the whole query of a warm page.
"""

from __future__ import annotations

from typing import Any

from app.models import LayerContext, LayerLowLevel, LayerSummary, UnitContext, UnitLowLevel, UnitScore

RED = "#d62728"
GREY = "#8c8c8c"
BLUE = "#1f77b4"
_FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13}

Figure = dict[str, Any]


def _layout(**extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "font": _FONT,
        "margin": {"l": 60, "r": 20, "t": 30, "b": 55},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "legend": {"orientation": "h", "y": 1.08, "x": 0},
        "hovermode": "closest",
    }
    layout.update(extra)
    return layout


def _axis(title: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "gridcolor": "#e6e6e6", "zeroline": False, **extra}


def _dashed(x0: float, x1: float, y0: float, y1: float, xref: str, yref: str) -> dict[str, Any]:
    return {"type": "line", "x0": x0, "x1": x1, "y0": y0, "y1": y1, "xref": xref, "yref": yref,
            "line": {"color": "#444", "width": 1.5, "dash": "dash"}}


def layer_scatter(ctx: LayerContext, unit_urls: list[str]) -> Figure:
    """The study's figure 2: in_top against in_bottom per unit, selective units in red.

    `unit_urls[i]` is the page of ctx.units[i], opened by a click on its point.
    """
    groups: dict[bool, list[tuple[UnitScore, str]]] = {True: [], False: []}
    for u, url in zip(ctx.units, unit_urls):
        groups[u.selective].append((u, url))
    data = []
    for selective, name, color in ((False, f"SI < {ctx.threshold:g}", GREY), (True, f"SI ≥ {ctx.threshold:g}", RED)):
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
    top = max(1.0, ctx.base_rate, *(max(u.in_top, u.in_bottom) for u in ctx.units)) if ctx.units else 1.0
    pad = top * 0.04
    layout = _layout(
        xaxis=_axis(f"in_top: {ctx.category} images among the top {ctx.k} ({ctx.pos_stat})",
                    range=[-pad, top + pad]),
        yaxis=_axis(f"in_bottom: {ctx.category} images among the bottom {ctx.k} ({ctx.neg_stat})",
                    range=[-pad, top + pad]),
        shapes=[
            _dashed(ctx.base_rate, ctx.base_rate, 0, 1, "x", "paper"),
            _dashed(0, 1, ctx.base_rate, ctx.base_rate, "paper", "y"),
        ],
        annotations=[{"x": ctx.base_rate, "y": 1, "xref": "x", "yref": "paper", "yanchor": "bottom",
                      "text": f"base rate {ctx.base_rate:.1f}", "showarrow": False, "font": {"size": 11}}],
        height=560,
    )
    return {"data": data, "layout": layout}


def unit_histogram(ctx: UnitContext) -> Figure:
    """The unit's responses, category vs rest, as shares of each group (their sizes differ)."""
    h = ctx.histogram
    centers = [(a + b) / 2 for a, b in zip(h.edges, h.edges[1:])]
    width = (h.edges[1] - h.edges[0]) if len(h.edges) > 1 else 1.0
    data = []
    for name, counts, color in ((ctx.category, h.category, RED), ("rest", h.rest, GREY)):
        total = sum(counts) or 1
        data.append({
            "type": "bar",
            "name": f"{name} ({sum(counts)})",
            "x": centers,
            "y": [c / total for c in counts],
            "width": width,
            "customdata": counts,
            "hovertemplate": f"{name}<br>%{{x:.3g}}: %{{customdata}} images (%{{y:.1%}})<extra></extra>",
            "marker": {"color": color, "opacity": 0.55},
        })
    layout = _layout(
        barmode="overlay",
        bargap=0,
        xaxis=_axis(f"response ({h.stat} of the pre-ReLU map)"),
        yaxis=_axis("share of the group's images", tickformat=".0%"),
        shapes=[_dashed(0, 0, 0, 1, "x", "paper")] if h.edges and h.edges[0] < 0 < h.edges[-1] else [],
        height=320,
    )
    return {"data": data, "layout": layout}


def layers_chart(layers: list[LayerSummary]) -> Figure:
    """Per layer: selective units, and those of them with at least the base rate in their bottom k."""
    names = [s.name for s in layers]
    data = [
        {"type": "bar", "name": "selective units", "x": names, "y": [s.selective for s in layers],
         "marker": {"color": RED}},
        {"type": "bar", "name": "… with in_bottom ≥ base rate", "x": names,
         "y": [s.selective_bottom for s in layers], "marker": {"color": BLUE}},
    ]
    layout = _layout(barmode="group", xaxis=_axis("layer"), yaxis=_axis("units"), height=380)
    return {"data": data, "layout": layout}


def unit_low_level(ll: UnitLowLevel) -> Figure:
    """Per low-level statistic, one small panel: box plots of the unit's positive and negative category images."""
    n = len(ll.stats)
    gap = 0.05
    width = (1 - gap * (n - 1)) / n
    data: list[dict[str, Any]] = []
    layout = _layout(height=300, showlegend=True, margin={"l": 45, "r": 10, "t": 30, "b": 60})
    for i, stat in enumerate(ll.stats):
        axis = "" if i == 0 else str(i + 1)
        for group, box, median, color in (("positive", stat.positive, stat.median_positive, RED),
                                          ("negative", stat.negative, stat.median_negative, BLUE)):  # fmt: skip
            if box is None:
                continue
            data.append({
                "type": "box", "name": f"{group} ({box.n})", "legendgroup": group, "showlegend": i == 0,
                "x": [group], "q1": [box.q1], "median": [median], "q3": [box.q3],
                "lowerfence": [box.min], "upperfence": [box.max],
                "xaxis": f"x{axis}", "yaxis": f"y{axis}", "marker": {"color": color}, "line": {"color": color},
            })
        delta = "n/a" if stat.effect_size is None else f"{stat.effect_size:+.2f}"
        layout[f"xaxis{axis}"] = {
            "domain": [i * (width + gap), i * (width + gap) + width], "anchor": f"y{axis}",
            "showticklabels": False, "title": {"text": f"{stat.name}<br>δ {delta}", "font": {"size": 12}},
        }
        layout[f"yaxis{axis}"] = {"anchor": f"x{axis}", "gridcolor": "#e6e6e6", "zeroline": False}
    return {"data": data, "layout": layout}


def layer_r2_histogram(ll: LayerLowLevel) -> Figure:
    """The distribution of r2_cv over the layer's selective units, with the claim's threshold dashed."""
    data = [{
        "type": "histogram", "x": ll.values, "nbinsx": 20, "name": f"selective units ({len(ll.values)})",
        "marker": {"color": RED, "opacity": 0.7},
        "hovertemplate": "r2_cv %{x}<br>%{y} units<extra></extra>",
    }]  # fmt: skip
    layout = _layout(
        xaxis=_axis("r2_cv: within-category variance explained by the five low-level statistics"),
        yaxis=_axis("units"), height=260, bargap=0.05,
        shapes=[_dashed(ll.threshold, ll.threshold, 0, 1, "x", "paper")],
        annotations=[{"x": ll.threshold, "y": 1, "xref": "x", "yref": "paper", "yanchor": "bottom",
                      "text": f"threshold {ll.threshold:g}", "showarrow": False, "font": {"size": 11}}],
    )
    return {"data": data, "layout": layout}
