"""`/categories`: every category of a run, layer by layer, to see whether the inhibition is a dog effect."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.figures import PALETTE, SHARE_AXIS, Figure, base_layout, titled_axis
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
    categories: list[CategoryShares]


def build(source: Source, p: CategoriesParams) -> CategoriesContext:
    """Each category of the run, scored with the same k, stats and threshold (p.category is not read)."""
    run = require_run(source, p.run)
    k = resolve_k(p, run.images)[0]
    shown = []
    for name, n_category in run.categories.items():
        shown.append(CategoryShares(
            category=name, n_category=n_category, base_rate=claim_rules.base_rate(k, run.images, n_category),
            layers=layer_shares(source, run, p.model_copy(update={"category": name})),
        ))
    return CategoriesContext(
        run_id=run.run_id, n_images=run.images, k=k, pos_stat=p.pos_stat, neg_stat=p.neg_stat, si_stat=p.si_stat,
        threshold=p.threshold, categories=shown,
    )


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
    return {"data": data, "layout": base_layout(xaxis=titled_axis("layer"), yaxis=SHARE_AXIS, height=480,
                                            legend={"orientation": "h", "y": -0.2, "x": 0},
                                            margin={"l": 60, "r": 20, "t": 20, "b": 40})}


PAGE: Page[CategoriesContext] = Page(
    "categories.html", lambda ctx, urls: urls.categories(), lambda ctx, urls: {"figure": categories_by_layer(ctx)},
)
