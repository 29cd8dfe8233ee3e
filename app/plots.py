"""Plotly figures as plain dicts (data + layout), drawn in the page by static/plotly.min.js.

Plain dicts rather than plotly.graph_objects: a figure object validates every property on
construction, which costs more than the whole query of a warm page.
"""

from __future__ import annotations

import math
from typing import Any

from app.class_profile import ClassEntry, ClassSummary
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
    layout = _layout(
        xaxis=_axis(f"in_top: {ctx.category} images among the top {ctx.k} ({ctx.pos_stat})",
                    range=[-pad, top + pad], domain=_SCATTER_DOMAIN),
        yaxis=_axis(f"in_bottom: {ctx.category} images among the bottom {ctx.k} ({ctx.neg_stat})",
                    range=[-pad, top + pad]),
        xaxis2=_axis("share of the group", domain=_MARGINAL_DOMAIN, anchor="y", tickformat=".0%"),
        barmode="overlay",
        shapes=[
            _dashed(ctx.base_rate, ctx.base_rate, 0, 1, "x", "paper"),
            _dashed(0, 1, ctx.base_rate, ctx.base_rate, "paper", "y"),
        ],
        annotations=[{"x": ctx.base_rate, "y": 1, "xref": "x", "yref": "paper", "yanchor": "bottom",
                      "text": f"base rate {ctx.base_rate:.1f}", "showarrow": False, "font": {"size": 11}}],
        height=560,
    )
    return {"data": data + marginals, "layout": layout}


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
    layout = _layout(barmode="group", xaxis=_axis("layer"),
                     yaxis=_axis("share with in_bottom ≥ base rate", tickformat=".0%", range=[0, 1]), height=340)
    return {"data": data, "layout": layout}


LABELLED_BARS = 60  # up to this many bars carry their class name under them; beyond, only on hover


def class_bars(groups: list[list[ClassEntry]], stat: str, category: str, median: float | None) -> Figure:
    """Classes by mean response, groups side by side with a gap; category classes red, thin classes faded.

    The dashed line is the category's median class: the grey bars above it beat the category.
    """
    placed: list[tuple[int, ClassEntry]] = []
    for group in groups:
        start = placed[-1][0] + 2 if placed else 0  # one empty slot between groups
        placed.extend((start + i, entry) for i, entry in enumerate(group))
    data = []
    for is_category, name, color in ((True, category, RED), (False, "other classes", GREY)):
        bars = [(x, e) for x, e in placed if e.is_category == is_category]
        data.append({
            "type": "bar",
            "name": f"{name} ({len(bars)})",
            "x": [x for x, _ in bars],
            "y": [e.mean for _, e in bars],
            "customdata": [[e.class_name, e.wnid, e.n, e.median, " (few images)" if e.few_images else ""]
                           for _, e in bars],
            "hovertemplate": "%{customdata[0]} (%{customdata[1]})<br>mean %{y:.3g}, median %{customdata[3]:.3g}"
                             "<br>%{customdata[2]} images%{customdata[4]}<extra></extra>",
            "marker": {"color": color, "opacity": [0.4 if e.few_images else 0.9 for _, e in bars]},
        })
    labelled = len(placed) <= LABELLED_BARS
    xaxis = _axis("", tickangle=-60, **({"tickvals": [x for x, _ in placed],
                                          "ticktext": [e.class_name for _, e in placed]} if labelled
                                         else {"showticklabels": False}))
    shapes = [] if median is None else [_dashed(0, 1, median, median, "paper", "y")]
    annotations = [] if median is None else [{
        "x": 1, "y": median, "xref": "paper", "yref": "y", "xanchor": "right", "yanchor": "bottom",
        "text": f"{category}'s median class {median:.3g}", "showarrow": False, "font": {"size": 11}}]
    layout = _layout(
        bargap=0.15, xaxis=xaxis, yaxis=_axis(f"mean response ({stat} of the pre-ReLU map)"),
        shapes=shapes, annotations=annotations, height=460 if labelled else 380,
        margin={"l": 60, "r": 20, "t": 30, "b": 170 if labelled else 30},
    )
    return {"data": data, "layout": layout}


def class_spread(summary: ClassSummary, category: str) -> Figure:
    """The category's classes, each a point on its class mean over a box, against the other classes' box."""
    members = summary.category.members
    data: list[dict[str, Any]] = [{
        "type": "box",
        "orientation": "h",
        "name": f"{category} classes ({len(members)})",
        "x": [m.mean for m in members],
        "text": [f"{m.class_name}: rank {m.rank} of {summary.classes}" for m in members],
        "boxpoints": "all",
        "jitter": 0.5,
        "pointpos": 0,
        "hovertemplate": "%{text}<br>mean %{x:.3g}<extra></extra>",
        "marker": {"color": RED, "size": 6},
        "line": {"color": RED},
    }]
    rest = summary.rest
    if rest.classes:  # only its quartiles travel: the summary stays small with a thousand classes
        data.append({
            "type": "box", "orientation": "h", "name": f"other classes ({rest.classes})",
            "y": [f"other classes ({rest.classes})"],
            "q1": [rest.q1], "median": [rest.median], "q3": [rest.q3],
            "lowerfence": [rest.min], "upperfence": [rest.max],
            "marker": {"color": GREY}, "line": {"color": GREY},
        })
    layout = _layout(
        xaxis=_axis(f"class mean ({summary.stat} of the pre-ReLU map)"), yaxis=_axis("", automargin=True),
        showlegend=False, height=240,
    )
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
