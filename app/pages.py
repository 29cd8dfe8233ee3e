"""Each page's HTML rendering of its context: template, canonical URL, and figures and rows for display."""

from __future__ import annotations

from typing import Any

from app import plots
from app.models import IndexContext, LayerContext, LayerSummary, SkippedContext, UnitContext
from app.render import Page, number
from app.urls import Urls


def _layer_extras(ctx: LayerContext, urls: Urls) -> dict[str, Any]:
    """The scatter, and the unit table's rows."""
    # Rows as plain tuples: up to 1,024 of them, and Jinja is slow at attribute lookups.
    unit_urls = [urls.unit(ctx.layer, u.unit) for u in ctx.units]
    rows = [(u.unit, url, -1 if u.si is None else u.si, number(u.si), u.in_top, u.in_bottom, u.selective)
            for u, url in zip(ctx.units, unit_urls)]
    return {"rows": rows, "figure": plots.layer_scatter(ctx, unit_urls),
            "low_level_figure": plots.layer_r2_histogram(ctx.low_level) if ctx.low_level else None}


INDEX: Page[IndexContext] = Page("index.html", lambda ctx, urls: urls.index())
LAYERS: Page[list[LayerSummary]] = Page(
    "layers.html", lambda ctx, urls: urls.layers(), lambda ctx, urls: {"figure": plots.layers_chart(ctx)}
)
LAYER: Page[LayerContext] = Page("layer.html", lambda ctx, urls: urls.layer(ctx.layer), _layer_extras)
UNIT: Page[UnitContext] = Page(
    "unit.html", lambda ctx, urls: urls.unit(ctx.layer, ctx.unit),
    lambda ctx, urls: {"figure": plots.unit_histogram(ctx),
                       "low_level_figure": plots.unit_low_level(ctx.low_level) if ctx.low_level else None},
)
SKIPPED: Page[SkippedContext] = Page("skipped.html", lambda ctx, urls: urls.skipped())
