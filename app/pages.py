"""Each page's HTML rendering of its context: template, canonical URL, and figures and rows for display."""

from __future__ import annotations

from typing import Any

from app import plots
from app.class_profile import ClassProfileContext
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


def _unit_extras(ctx: UnitContext, urls: Urls) -> dict[str, Any]:
    """The histogram, both ends of the class profile, and the spread of the category's classes."""
    c = ctx.classes
    return {
        "figure": plots.unit_histogram(ctx),
        "class_figure": plots.class_bars([c.top, c.bottom], c.stat, ctx.category, c.beats_category_median.median),
        "spread_figure": plots.class_spread(c, ctx.category),
    }


def _classes_extras(ctx: ClassProfileContext, urls: Urls) -> dict[str, Any]:
    """The bar chart of every class."""
    return {"figure": plots.class_bars([ctx.classes], ctx.stat, ctx.category, ctx.beats_category_median.median)}


INDEX: Page[IndexContext] = Page("index.html", lambda ctx, urls: urls.index())
LAYERS: Page[list[LayerSummary]] = Page(
    "layers.html", lambda ctx, urls: urls.layers(), lambda ctx, urls: {"figure": plots.layers_chart(ctx)}
)
LAYER: Page[LayerContext] = Page("layer.html", lambda ctx, urls: urls.layer(ctx.layer), _layer_extras)
UNIT: Page[UnitContext] = Page("unit.html", lambda ctx, urls: urls.unit(ctx.layer, ctx.unit), _unit_extras)
CLASSES: Page[ClassProfileContext] = Page(
    "classes.html", lambda ctx, urls: urls.classes(ctx.layer, ctx.unit, ctx.stat), _classes_extras
)
SKIPPED: Page[SkippedContext] = Page("skipped.html", lambda ctx, urls: urls.skipped())
