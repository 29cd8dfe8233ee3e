"""Each page's HTML rendering of its context: template, canonical URL, and figures and rows for display."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app import compare_plots, layer_controls, plots
from app.category_shares import CategoriesContext
from app.claims import ClaimsContext
from app.class_profile import ClassProfileContext
from app.compare import CompareContext
from app.models import Group, Groups, IndexContext, LayerContext, LayerSummary, SkippedContext, UnitContext
from app.render import Page, number
from app.urls import Urls


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _group_rows(groups: Groups) -> list[tuple[str, str, str]]:
    """The comparison table, one (label, selective, rest) row per measure, preformatted."""
    measures: list[tuple[str, Callable[[Group], str]]] = [
        ("units", lambda g: number(g.units)),
        ("with in_bottom ≥ base rate", lambda g: number(g.with_bottom_at_base_rate)),
        ("share with in_bottom ≥ base rate", lambda g: _share(g.share_with_bottom_at_base_rate)),
        ("median in_top", lambda g: number(g.median_in_top, 1)),
        ("median in_bottom", lambda g: number(g.median_in_bottom, 1)),
    ]
    return [(label, show(groups.selective), show(groups.rest)) for label, show in measures]


def _layer_extras(ctx: LayerContext, urls: Urls) -> dict[str, Any]:
    """The scatter, the comparison table's rows and the unit table's rows."""
    # Rows as plain tuples: up to 1,024 of them, and Jinja is slow at attribute lookups.
    unit_urls = [urls.unit(ctx.layer, u.unit) for u in ctx.units]
    rows = [(u.unit, url, -1 if u.si is None else u.si, number(u.si), -1 if u.auroc is None else u.auroc,
             number(u.auroc), u.in_top, u.p_top, u.q_top, u.significant_top,
             u.in_bottom, u.p_bottom, u.q_bottom, u.significant_bottom, u.selective)
            for u, url in zip(ctx.units, unit_urls)]
    return {"rows": rows, "figure": plots.layer_scatter(ctx, unit_urls), "group_rows": _group_rows(ctx.groups),
            "fdr": layer_controls.FDR,
            "low_level_figure": plots.layer_r2_histogram(ctx.low_level) if ctx.low_level else None}


def _layers_extras(ctx: list[LayerSummary], urls: Urls) -> dict[str, Any]:
    """The chart of selective units per layer, and the selective-against-rest chart of shares."""
    return {"figure": plots.layers_chart(ctx), "shares_figure": plots.layers_shares(ctx)}


def _unit_extras(ctx: UnitContext, urls: Urls) -> dict[str, Any]:
    """The histogram, both ends of the class profile, and the spread of the category's classes."""
    c = ctx.classes
    return {
        "figure": plots.unit_histogram(ctx),
        "class_figure": plots.class_bars([c.top, c.bottom], c.stat, ctx.category, c.beats_category_median.median),
        "spread_figure": plots.class_spread(c, ctx.category),
        "low_level_figure": plots.unit_low_level(ctx.low_level) if ctx.low_level else None,
    }


def _classes_extras(ctx: ClassProfileContext, urls: Urls) -> dict[str, Any]:
    """The bar chart of every class."""
    return {"figure": plots.class_bars([ctx.classes], ctx.stat, ctx.category, ctx.beats_category_median.median)}


INDEX: Page[IndexContext] = Page("index.html", lambda ctx, urls: urls.index())
LAYERS: Page[list[LayerSummary]] = Page("layers.html", lambda ctx, urls: urls.layers(), _layers_extras)
LAYER: Page[LayerContext] = Page("layer.html", lambda ctx, urls: urls.layer(ctx.layer), _layer_extras)
UNIT: Page[UnitContext] = Page("unit.html", lambda ctx, urls: urls.unit(ctx.layer, ctx.unit), _unit_extras)
CLASSES: Page[ClassProfileContext] = Page(
    "classes.html", lambda ctx, urls: urls.classes(ctx.layer, ctx.unit, ctx.stat), _classes_extras
)
CLAIMS: Page[ClaimsContext] = Page(
    "claims.html", lambda ctx, urls: urls.claims(ctx.layer if ctx.layer_source == "given" else None)
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
