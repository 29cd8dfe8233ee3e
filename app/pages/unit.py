"""`/layers/{layer}/units/{unit}`: the study's figure 1 for one unit: its strongest positive, near-zero and
strongest negative images, with their maps, its scores, histogram, class profile and low-level test.

The server never computes a map (it has no torch): the worker's second pass stored them, and this
page only decodes them and aligns them. The page stretches a map's h x w cells uniformly over the
crop square, cell (i, j) over rows i/h..(i+1)/h and columns j/w..(j+1)/w of it, and colours them on
each row on its own scale, ±map_scales[row]: the largest |value| over that row's maps, so that an
inhibition of -189 in the negative row shows even when the positive row reaches +623.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from app.data.units import class_profile, histograms, unit_maps
from app.figures import BLUE, GREY, RED, Figure, base_layout, dashed_line, titled_axis
from app.pages import classes, low_level, unit_interventions
from app.pages.classes import ClassSummary
from app.pages.common import ScoreInfo, score_info, scores
from app.pages.labels import UnitLabelModel, label_model
from app.pages.low_level import UnitLowLevel
from app.pages.unit_interventions import (
    Convergence,
    SpectrumItem,
    UnitAblation,
    VisualizationEntry,
)
from app.params import THUMB_SIZES, UnitParams
from app.render import Page
from app.urls import Urls
from unitscope import claim_rules, metrics_sql, unit_summary
from unitscope.crop import network_crop
from unitscope.data.images import image_sizes
from unitscope.data.labels import layer_labels
from unitscope.data.rankings import rankings
from unitscope.data.runs import Run, require_run, require_unit
from unitscope.data.scores import ScoreRow
from unitscope.data.source import Source
from unitscope.data.split_half import unit_halves
from unitscope.errors import NotFound
from unitscope.maps import decode

THUMBNAIL = THUMB_SIZES[1]  # px, the unit page's image size, one of the sizes thumbnails are made at


class UnitMap(BaseModel):
    """A unit's pre-ReLU map for one image, as stored: float16, printed to 5 significant digits."""

    shape: list[int] = Field(description="[h, w]: rows and columns of the map")
    values: list[float] = Field(description="h x w values, row-major")
    peak: list[int] = Field([], description="[row, column] of the map's largest value (the first, row-major)")
    trough: list[int] = Field([], description="[row, column] of the map's smallest value")


class Crop(BaseModel):
    """The centre crop the network saw, as fractions of the image's width (left, width) and height."""

    left: float
    top: float
    width: float
    height: float


class ImageEntry(BaseModel):
    """An image in one of a unit's rankings."""

    image: int = Field(description="image id within the run")
    wnid: str
    class_name: str
    is_category: bool
    value: float
    url: str = Field(description="the full image")
    thumbnail: str
    in_both: bool = Field(False, description="the image is in both the strongest positive and the strongest negative "
                          "row shown: it excites the unit in one place of its map and inhibits it in another")
    crop: Crop | None = Field(default=None, description="the network's crop of the image; null when unknown")
    map: UnitMap | None = Field(
        default=None,
        description="the unit's pre-ReLU map over the crop, stretched uniformly; null when not stored "
        "(maps are kept for the first 16 images of each default ranking)",
    )


class Histogram(BaseModel):
    """A unit's responses on one stat, binned server-side: category vs the rest."""

    stat: str
    edges: list[float] = Field(description="bin edges, one more than the counts")
    category: list[int]
    rest: list[int]


class UnitContext(ScoreInfo):
    """`/layers/{layer}/units/{unit}`: the study's figure 1 for one unit."""

    layer: str
    unit: int
    units: int = Field(description="units in the layer")
    n: int
    near_stat: str
    si: float | None
    in_top: int
    in_bottom: int
    overlap: int = Field(0, description="images in both the unit's top k and its bottom k")
    in_bottom_only: int = Field(0, description="category images of its bottom k that are not in its top k")
    selective: bool
    si_half_a: float | None = Field(description="SI on the even image ids alone (split-half reliability)")
    si_half_b: float | None = Field(description="SI on the odd image ids alone")
    positive: list[ImageEntry]
    near_zero: list[ImageEntry]
    negative: list[ImageEntry]
    histogram: Histogram = Field(description="the responses on si_stat")
    sides: list[Histogram] = Field([], description="the responses on pos_stat (the positive row's stat), then on "
                                   "neg_stat (the negative row's), each category against the rest; one when they are "
                                   "the same stat")
    classes: ClassSummary = Field(description="the unit's class profile on si_stat, in brief")
    map_scale: float | None = Field(
        default=None, description="max |value| over the page's maps (the largest of map_scales)"
    )
    map_scales: dict[str, float | None] = Field(
        {}, description="per row (positive, near_zero, negative): max |value| over its maps, its overlays' colour "
        "scale; null for a row without a map")
    low_level: UnitLowLevel | None = Field(description="null when the run has no image_stats")
    visualizations: list[VisualizationEntry] = Field([], description="images optimised to drive the unit up and down "
                                                     "(python -m worker visualize); empty where none were made")
    convergence: Convergence | None = Field(None, description="did the optimised images beat the dataset's extremes")
    spectrum: list[SpectrumItem] = Field([], description="Distill's activation spectrum on the mean statistic, "
                                         "from the negative-optimised images to the positive-optimised ones")
    ablation: UnitAblation | None = Field(None, description="the unit ablated alone (python -m worker ablate --units)")
    ablation_hidden: str | None = Field(None, description="why the unit's stored ablation is not shown: it was tallied "
                                        "on other images than the layer's latest ablate job; null otherwise")
    label: UnitLabelModel | None = Field(None, description="what most excites and inhibits the unit, by class and "
                                         "synset; null for a DB without labels (python -m worker derive adds them)")
    order: str = Field(description="what prev_unit and next_unit follow: 'si' (the layer's units by SI, largest "
                       "first, undefined SI last) or 'unit' (unit number)")
    prev_unit: int | None
    next_unit: int | None


def _neighbours(rows: Iterable[ScoreRow], unit_id: int, order: str) -> dict[str, int | None]:
    """prev_unit and next_unit of unit_id: by SI (largest first, undefined last, ties by number) or by number."""
    sequence = [r.unit for r in sorted(rows, key=lambda r: (r.unit,) if order == "unit"
                                       else (r.si is None, -(r.si or 0.0), r.unit))]
    at = sequence.index(unit_id)
    return {"prev_unit": sequence[at - 1] if at > 0 else None,
            "next_unit": sequence[at + 1] if at + 1 < len(sequence) else None}


def build(source: Source, layer_name: str, unit_id: int, p: UnitParams, urls: Urls) -> UnitContext:
    """Three rankings of n images, the scores, and a histogram (the rendered page is cached by URL: app.twin)."""
    run = require_run(source, p.run)
    units = require_unit(run, layer_name, unit_id)
    return _build(source, run, layer_name, unit_id, units, p, urls)


def _build(
    source: Source, run: Run, layer_name: str, unit_id: int, units: int, p: UnitParams, urls: Urls
) -> UnitContext:
    info = score_info(run, p)
    found = scores(source, run, layer_name, p, info.k)
    score = found.by_unit.get(unit_id)
    if score is None:
        raise NotFound(f"no responses for unit {unit_id} of {layer_name}")
    stats: dict[metrics_sql.RankKind, str] = {"positive": p.pos_stat, "near_zero": p.near_stat, "negative": p.neg_stat}
    ranked = rankings(source, run, layer_name, unit_id, stats, p.category, p.n)
    both = {r[0] for r in ranked["positive"]} & {r[0] for r in ranked["negative"]}
    crops, maps = overlays(source, run, layer_name, unit_id, sorted({r[0] for rs in ranked.values() for r in rs}))
    rows = {
        kind: [
            ImageEntry(
                image=image_id, wnid=wnid, class_name=class_name, is_category=bool(is_cat), value=float(value),
                url=urls.image(run.run_id, image_id), thumbnail=urls.image(run.run_id, image_id, THUMBNAIL),
                in_both=kind != "near_zero" and image_id in both, crop=crops.get(image_id), map=maps.get(image_id),
            )
            for image_id, wnid, class_name, is_cat, value in ranked[kind]
        ]
        for kind in stats
    }
    binned = histograms(source, run, layer_name, unit_id, list(dict.fromkeys((p.si_stat, p.pos_stat, p.neg_stat))),
                        p.category)
    seen = unit_interventions.visualizations(source, run, layer_name, unit_id, p.category, urls)
    halves = unit_halves(source, run, layer_name, p.category, p.si_stat)
    depth = min(info.k, run.images)
    # (When 2k > n the overlap warning of score_info already says that the two sets must share images.)
    if not info.warnings and score.overlap >= claim_rules.OVERLAP_WARN_SHARE * depth:
        info.warnings.append(
            f"{score.overlap:,} of this unit's bottom {info.k:,} images ({score.overlap / depth:.0%}) are also among "
            f"its top {info.k:,}: they excite it in one place of its map and inhibit it in another, so they say "
            f"nothing of inhibition without excitation ({score.in_bottom_only:,} category images are among the "
            f"{depth - score.overlap:,} bottom images that are not)")
    return UnitContext(
        **info.model_dump(), layer=layer_name, unit=unit_id, units=units, n=p.n, near_stat=p.near_stat,
        si=score.si, in_top=score.in_top, in_bottom=score.in_bottom, overlap=score.overlap,
        in_bottom_only=score.in_bottom_only, selective=claim_rules.selective(score.si, p.threshold),
        si_half_a=halves.si_a.get(unit_id), si_half_b=halves.si_b.get(unit_id),
        positive=rows["positive"], near_zero=rows["near_zero"], negative=rows["negative"],
        histogram=_histogram(binned[p.si_stat], p.si_stat),
        sides=[_histogram(binned[stat], stat) for stat in dict.fromkeys((p.pos_stat, p.neg_stat))],
        classes=classes.summary(
            *class_profile(source, run, layer_name, unit_id, p.si_stat, p.category), p.si_stat),
        map_scale=map_scale(maps.values()),
        map_scales={kind: map_scale([e.map for e in entries if e.map is not None]) for kind, entries in rows.items()},
        low_level=low_level.for_unit(source, run, layer_name, unit_id, p, info.k),
        visualizations=seen, convergence=unit_interventions.convergence(seen),
        spectrum=unit_interventions.spectrum(source, run, layer_name, unit_id, p.category, seen, urls),
        ablation=unit_interventions.unit_ablation(source, run, layer_name, unit_id),
        ablation_hidden=unit_interventions.hidden_note(source, run, layer_name, unit_id),
        label=label_model(layer_labels(source, run.run_id, layer_name).get(unit_id)),
        order=p.order, **_neighbours(found.rows, unit_id, p.order),
    )


def _histogram(binned: unit_summary.Histogram | None, stat: str) -> Histogram:
    return Histogram(stat=stat, edges=binned.edges if binned else [], category=binned.category if binned else [],
                     rest=binned.rest if binned else [])


def _printed(value: float) -> float:
    # 5 significant digits identify a float16 exactly and keep the JSON short.
    return float(f"{value:.5g}")


def unit_map(height: int, width: int, blob: bytes) -> UnitMap:
    """A stored map as the JSON twin gives it."""
    values = decode(blob, height, width)
    peak, trough = (divmod(int(i), width) for i in (values.argmax(), values.argmin()))
    return UnitMap(shape=[height, width], values=[_printed(v) for v in values.ravel().tolist()], peak=list(peak),
                   trough=list(trough))


def map_scale(maps: Iterable[UnitMap]) -> float | None:
    """max |value| over the maps (None without maps, or when every value is 0)."""
    scale = max((abs(v) for m in maps for v in m.values), default=0.0)
    return scale or None


def overlays(
    source: Source, run: Run, layer: str, unit: int, image_ids: list[int]
) -> tuple[dict[int, Crop], dict[int, UnitMap]]:
    """The network's crop of each image (when the run's preprocessing says it) and the unit's stored maps."""
    crops = {}
    for image_id, (width, height) in image_sizes(source, run.run_id, image_ids).items():
        box = network_crop(run.preprocessing, width, height)
        if box is not None:
            crops[image_id] = Crop(left=box.left, top=box.top, width=box.width, height=box.height)
    maps = {
        image_id: unit_map(h, w, blob)
        for image_id, (h, w, blob) in unit_maps(source, run, layer, unit, image_ids).items()
    }
    return crops, maps


def unit_histogram(ctx: UnitContext) -> Figure:
    """The unit's responses on the positive row's stat and on the negative row's, side by side, category vs rest,
    as shares of each group (their sizes differ)."""
    panels = ctx.sides or [ctx.histogram]
    role = {ctx.pos_stat: "positive row", ctx.neg_stat: "negative row"}
    data: list[dict[str, Any]] = []
    axes: dict[str, Any] = {}
    gap = 0.06
    width_each = (1 - gap * (len(panels) - 1)) / len(panels)
    for i, h in enumerate(panels):
        suffix = "" if i == 0 else str(i + 1)
        centers = [(a + b) / 2 for a, b in zip(h.edges, h.edges[1:])]
        width = (h.edges[1] - h.edges[0]) if len(h.edges) > 1 else 1.0
        for name, counts, color in ((ctx.category, h.category, RED), ("rest", h.rest, GREY)):
            total = sum(counts) or 1
            data.append({
                "type": "bar", "name": f"{name} ({sum(counts)})", "legendgroup": name, "showlegend": i == 0,
                "x": centers, "y": [c / total for c in counts], "width": width, "customdata": counts,
                "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
                "hovertemplate": f"{name}<br>%{{x:.3g}}: %{{customdata}} images (%{{y:.1%}})<extra></extra>",
                "marker": {"color": color, "opacity": 0.55},
            })
        start = i * (width_each + gap)
        title = f"{h.stat} of the pre-ReLU map" + (f" ({role[h.stat]})" if len(panels) > 1 else "")
        axes[f"xaxis{suffix}"] = titled_axis(title, domain=[start, start + width_each], anchor=f"y{suffix}")
        axes[f"yaxis{suffix}"] = titled_axis("share of the group's images" if i == 0 else "", tickformat=".0%",
                                             anchor=f"x{suffix}")
    shapes = [dashed_line(0, 0, 0, 1, "x" + ("" if i == 0 else str(i + 1)), "paper")
              for i, h in enumerate(panels) if h.edges and h.edges[0] < 0 < h.edges[-1]]
    return {"data": data, "layout": base_layout(barmode="overlay", bargap=0, shapes=shapes, height=320, **axes)}


def unit_low_level(ll: UnitLowLevel) -> Figure:
    """Per low-level statistic, one small panel: box plots of the unit's positive and negative category images."""
    n = len(ll.stats)
    gap = 0.05
    width = (1 - gap * (n - 1)) / n
    data: list[dict[str, Any]] = []
    layout = base_layout(height=300, showlegend=True, margin={"l": 45, "r": 10, "t": 30, "b": 60})
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


def _unit_extras(ctx: UnitContext, urls: Urls) -> dict[str, Any]:
    """The histogram, both ends of the class profile, and the spread of the category's classes."""
    c = ctx.classes
    return {
        "figure": unit_histogram(ctx),
        "class_figure": classes.class_bars([c.top, c.bottom], c.stat, ctx.category, c.beats_category_median.median),
        "spread_figure": classes.class_spread(c, ctx.category),
        "low_level_figure": unit_low_level(ctx.low_level) if ctx.low_level else None,
    }


PAGE: Page[UnitContext] = Page("unit.html", lambda ctx, urls: urls.unit(ctx.layer, ctx.unit), _unit_extras)
