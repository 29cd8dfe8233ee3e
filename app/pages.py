"""Each page's HTML rendering of its context: template, canonical URL, and figures and rows for display."""

from __future__ import annotations

from typing import Any

from app import compare_plots, plots
from app.category_shares import CategoriesContext
from app.compare import CompareContext
from app.models import IndexContext, LayerContext, LayerSummary, SkippedContext, UnitContext
from app.render import Page, number
from app.urls import Urls


def _layer_extras(ctx: LayerContext, urls: Urls) -> dict[str, Any]:
    """The scatter, and the unit table's rows."""
    # Rows as plain tuples: up to 1,024 of them, and Jinja is slow at attribute lookups.
    unit_urls = [urls.unit(ctx.layer, u.unit) for u in ctx.units]
    rows = [(u.unit, url, -1 if u.si is None else u.si, number(u.si), u.in_top, u.in_bottom, u.selective)
            for u, url in zip(ctx.units, unit_urls)]
    return {"rows": rows, "figure": plots.layer_scatter(ctx, unit_urls)}


INDEX: Page[IndexContext] = Page("index.html", lambda ctx, urls: urls.index())
LAYERS: Page[list[LayerSummary]] = Page(
    "layers.html", lambda ctx, urls: urls.layers(), lambda ctx, urls: {"figure": plots.layers_chart(ctx)}
)
LAYER: Page[LayerContext] = Page("layer.html", lambda ctx, urls: urls.layer(ctx.layer), _layer_extras)
UNIT: Page[UnitContext] = Page(
    "unit.html", lambda ctx, urls: urls.unit(ctx.layer, ctx.unit),
    lambda ctx, urls: {"figure": plots.unit_histogram(ctx)},
)
SKIPPED: Page[SkippedContext] = Page("skipped.html", lambda ctx, urls: urls.skipped())


def _compare_extras(ctx: CompareContext, urls: Urls) -> dict[str, Any]:
    """The curves by depth, the unit pairs' scatter, and links into each run."""
    extras: dict[str, Any] = {
        "selective_figure": compare_plots.selective_by_depth(ctx), "bottom_figure": compare_plots.bottom_by_depth(ctx),
        "run_urls": {side.run.run_id: urls.with_params(run=side.run.run_id) for side in (ctx.a, ctx.b)},
    }
    if ctx.scatter is not None:
        in_a = extras["run_urls"][ctx.a.run.run_id]
        unit_urls = [in_a.unit(ctx.scatter.layer, u) for u in ctx.scatter.units]
        extras["scatter_figure"] = compare_plots.si_pairs(ctx.scatter, ctx.a.run.run_id, ctx.b.run.run_id, unit_urls)
    return extras


COMPARE: Page[CompareContext] = Page(
    "compare.html",
    lambda ctx, urls: urls.compare(ctx.a.run.run_id, ctx.b.run.run_id, ctx.scatter.layer if ctx.scatter else None),
    _compare_extras,
)
CATEGORIES: Page[CategoriesContext] = Page(
    "categories.html", lambda ctx, urls: urls.categories(),
    lambda ctx, urls: {"figure": compare_plots.categories_by_layer(ctx)},
)
