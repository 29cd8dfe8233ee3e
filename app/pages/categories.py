"""`/categories`: every category of a run, layer by layer, to see whether the inhibition is a dog effect."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.figures import GREY, RED, Figure, base_layout, interval_bars, titled_axis
from app.pages.common import LayerShares, layer_shares, resolve_k
from app.params import CategoriesParams
from app.render import Page
from unitscope import claim_rules
from unitscope.data.runs import require_run
from unitscope.data.source import Source


class CategoryShares(BaseModel):
    """One category of the run and its layers' shares."""

    category: str
    n_category: int = Field(description="the run's images in the category")
    base_rate: float = Field(description="min(k, images) x the category's share")
    layers: list[LayerShares]


class CategoriesContext(BaseModel):
    """`/categories`: the run, the score parameters (category aside), and each of its categories."""

    run_id: int
    n_images: int
    k: int
    pos_stat: str
    neg_stat: str
    si_stat: str
    threshold: float
    k_source: str = Field(description="'given' (?k=) or 'default' (chosen from the run's size)")
    k_reason: str = Field(description="how k was chosen, for the page")
    warnings: list[str] = Field(description="what makes these numbers hard to read, e.g. overlapping top and bottom")
    categories: list[CategoryShares]


def build(source: Source, p: CategoriesParams) -> CategoriesContext:
    """Each category of the run, scored with the same k, stats and threshold (p.category is not read)."""
    run = require_run(source, p.run)
    k, k_source, k_reason = resolve_k(p, run.images)
    overlap = claim_rules.overlap_warning(k, run.images)
    shown = []
    for name, n_category in run.categories.items():
        shown.append(CategoryShares(
            category=name, n_category=n_category, base_rate=claim_rules.base_rate(k, run.images, n_category),
            layers=layer_shares(source, run, p.model_copy(update={"category": name})),
        ))
    return CategoriesContext(
        run_id=run.run_id, n_images=run.images, k=k, pos_stat=p.pos_stat, neg_stat=p.neg_stat, si_stat=p.si_stat,
        threshold=p.threshold, k_source=k_source, k_reason=k_reason, warnings=[] if overlap is None else [overlap],
        categories=shown,
    )


N_ROW = -0.1  # where a panel prints its selective units' n, below 0%


def _panel(c: CategoryShares, axis: str, first: bool) -> list[dict[str, Any]]:
    """One category's two lines: selective units (red, their count printed at each point) and the rest (grey)."""
    names = [s.layer for s in c.layers]
    lines = []
    for name, color, dash, values, intervals, hits, totals in (
        ("selective", RED, "solid", [s.share_selective_bottom for s in c.layers],
         [s.ci_selective_bottom for s in c.layers], [s.selective_bottom for s in c.layers],
         [s.selective for s in c.layers]),
        ("rest", GREY, "dot", [s.share_rest_bottom for s in c.layers], [s.ci_rest_bottom for s in c.layers],
         [s.rest_bottom for s in c.layers], [s.units - s.selective for s in c.layers]),
    ):
        lines.append({
            "type": "scatter", "mode": "lines+markers",
            "name": f"{name} units", "legendgroup": name, "showlegend": first, "xaxis": f"x{axis}",
            "yaxis": f"y{axis}", "x": names, "y": values, "line": {"color": color, "dash": dash, "width": 1.5},
            "marker": {"color": color, "size": 6}, "error_y": interval_bars(values, intervals, color),
            "customdata": [[h, n, *(ci if ci else (None, None))] for h, n, ci in zip(hits, totals, intervals)],
            "hovertemplate": f"{c.category}, %{{x}}: %{{customdata[0]}} of %{{customdata[1]}} {name} units "
                             "(%{y:.1%}; 95% CI %{customdata[2]:.0%}–%{customdata[3]:.0%})<extra></extra>",
        })
    # n along the panel's foot, one per layer: a share of 1 selective unit is as likely 0% as 100%.
    lines.append({"type": "scatter", "mode": "text", "name": "selective units (n)", "showlegend": False,
                  "xaxis": f"x{axis}", "yaxis": f"y{axis}", "x": names, "y": [N_ROW] * len(names),
                  "text": [str(s.selective) for s in c.layers], "textfont": {"size": 10, "color": RED},
                  "hovertemplate": "%{x}: %{text} selective units<extra></extra>"})
    return lines


def categories_by_layer(ctx: CategoriesContext) -> Figure:
    """One panel per category: the share of its selective units with in_bottom >= base rate (red, n printed,
    95% Wilson intervals) beside the share of the rest (grey), layer by layer."""
    columns = min(3, max(1, len(ctx.categories)))
    rows = -(-len(ctx.categories) // columns)
    height, top, bottom = 70 + 260 * rows, 70, 40
    # The legend sits above the first row's titles (y in paper units of the plotting area).
    layout = base_layout(height=height, margin={"l": 60, "r": 20, "t": top, "b": bottom}, annotations=[],
                         legend={"orientation": "h", "x": 0, "y": 1 + 28 / (height - top - bottom),
                                 "yanchor": "bottom"})
    data = []
    gap_x, gap_y = 0.06, 90 / height  # room for a panel's rotated layer names and the next one's title
    for i, c in enumerate(ctx.categories):
        row, col = divmod(i, columns)
        axis = "" if i == 0 else str(i + 1)
        x0 = col / columns + (gap_x / 2 if col else 0)
        x1 = (col + 1) / columns - (gap_x / 2 if col < columns - 1 else 0)
        y1 = 1 - row / rows - (gap_y / 2 if row else 0)
        y0 = 1 - (row + 1) / rows + (gap_y / 2 if row < rows - 1 else 0)
        layout[f"xaxis{axis}"] = titled_axis("", domain=[x0, x1], anchor=f"y{axis}", tickangle=-45,
                                             tickfont={"size": 10})
        layout[f"yaxis{axis}"] = titled_axis("share" if col == 0 else "", domain=[y0, y1], anchor=f"x{axis}",
                                             range=[N_ROW - 0.06, 1.06], tickformat=".0%",
                                             tickvals=[0, 0.25, 0.5, 0.75, 1])
        layout["annotations"].append({
            "text": f"<b>{c.category}</b> · {c.n_category:,} images · base rate {c.base_rate:.1f}",
            "xref": "paper", "yref": "paper", "x": (x0 + x1) / 2, "y": y1, "yanchor": "bottom",
            "showarrow": False, "font": {"size": 12}})
        data.extend(_panel(c, axis, first=i == 0))
    return {"data": data, "layout": layout}


PAGE: Page[CategoriesContext] = Page(
    "categories.html", lambda ctx, urls: urls.categories(), lambda ctx, urls: {"figure": categories_by_layer(ctx)},
)
