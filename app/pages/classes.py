"""`/layers/{layer}/units/{unit}/classes`: a unit's class profile, its mean and median response to every class,
the category's classes marked; and the summary of it that the unit page shows (ClassSummary).

It tests the study's Discussion: "images from totally different categories, such as cars or
cups, evoke higher activation in a dog-selective neuron than images of dogs of other breeds".
Which classes beat the category is unitscope.claim_rules' rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from app.data.units import class_profile
from app.figures import GREY, RED, Figure, base_layout, dashed_line, titled_axis
from app.params import NAME_MAX, RunParams, StatName
from app.render import Page
from app.urls import Urls
from unitscope import claim_rules, schema
from unitscope.claim_rules import ClassRow
from unitscope.data.runs import require_category, require_run, require_unit
from unitscope.data.source import Source
from unitscope.errors import NotFound

SUMMARY_CLASSES = 20  # the unit page shows this many classes from each end of the profile
DEFAULT_STAT = schema.DEFAULT_SI_STAT
LABELLED_BARS = 60  # up to this many bars carry their class name under them; beyond, only on hover


class ClassParams(RunParams):
    """What a class profile depends on: the category whose classes are marked, and the stat."""

    category: str = Field(schema.DEFAULT_CATEGORY, min_length=1, max_length=NAME_MAX)
    stat: StatName = Field(DEFAULT_STAT, description="the stat of the pre-ReLU map the classes are compared on")


class ClassEntry(BaseModel):
    """One class of a unit's profile."""

    wnid: str
    class_name: str
    n: int = Field(description="the class's images in the run")
    mean: float = Field(description="mean of the unit's responses to the class's images")
    median: float
    is_category: bool
    few_images: bool = Field(description=f"n < {claim_rules.FEW_IMAGES}: shown, but its mean is too thin to rank it by")


class ClassMean(BaseModel):
    """A class and its mean response."""

    wnid: str
    class_name: str
    mean: float


class BeatsCategoryMedian(BaseModel):
    """The non-category classes whose mean is above the category's median class."""

    count: int
    median: float | None = Field(
        description=f"the category's median class: the median of the means of its classes of {claim_rules.FEW_IMAGES} "
        "or more images (claim_rules.category_median); null without one")
    classes: list[ClassMean] = Field(description="in profile order, highest mean first")


class RankedClass(ClassMean):
    """A class with its place in the whole profile."""

    rank: int = Field(description="1 for the class with the highest mean")
    few_images: bool = Field(description=f"fewer than {claim_rules.FEW_IMAGES} images: drawn, but not in the box")


class Spread(BaseModel):
    """How a group's classes of FEW_IMAGES or more images spread: their means' quartiles (numpy's linear
    percentiles), null for no such class. The classes ranked, so that the category's median is its median class."""

    classes: int = Field(description=f"the group's classes of {claim_rules.FEW_IMAGES} or more images, those the "
                         "spread is over")
    few_images: int = Field(description=f"the group's classes of fewer than {claim_rules.FEW_IMAGES} images, left out")
    min: float | None
    q1: float | None
    median: float | None = Field(description="for the category, its median class: beats_category_median's median")
    q3: float | None
    max: float | None


class CategorySpread(Spread):
    """The category's own classes: their spread, and each of them with its rank."""

    members: list[RankedClass] = Field(description="the category's classes in profile order")


class ClassSummary(BaseModel):
    """The unit page's compact class profile: both ends, the category's spread and who beats it."""

    stat: str
    classes: int = Field(description="classes in the run")
    top: list[ClassEntry] = Field(description=f"the {SUMMARY_CLASSES} classes with the highest mean")
    bottom: list[ClassEntry] = Field(
        description=f"the {SUMMARY_CLASSES} with the lowest, highest mean first; none of them is in top")
    category: CategorySpread
    rest: Spread = Field(description="the other classes")
    beats_category_median: BeatsCategoryMedian


class ClassProfileContext(BaseModel):
    """`/layers/{layer}/units/{unit}/classes`: every class of the run, by mean response, highest first."""

    run_id: int
    layer: str
    unit: int
    units: int = Field(description="units in the layer")
    category: str
    categories: list[str] = Field(description="the run's categories, the values ?category= takes")
    stat: str
    few_images: int = Field(description="classes with fewer images than this are flagged few_images")
    classes: list[ClassEntry]
    beats_category_median: BeatsCategoryMedian


def _entry(row: ClassRow, names: dict[str, str]) -> ClassEntry:
    return ClassEntry(wnid=row.key, class_name=names[row.key], n=row.n, mean=row.mean, median=row.median,
                      is_category=row.is_category, few_images=row.few_images)


def _beats(rows: list[ClassRow], names: dict[str, str]) -> BeatsCategoryMedian:
    means = {row.key: row.mean for row in rows}
    beaten = [ClassMean(wnid=key, class_name=names[key], mean=means[key])
              for key in claim_rules.beats_category_median(rows)]
    return BeatsCategoryMedian(count=len(beaten), median=claim_rules.category_median(rows), classes=beaten)


def _spread(rows: list[ClassRow]) -> Spread:
    """The spread of the ranked classes among rows; claim_rules' rule decides which are ranked."""
    means = [row.mean for row in rows if not row.few_images]
    few = len(rows) - len(means)
    if not means:
        return Spread(classes=0, few_images=few, min=None, q1=None, median=None, q3=None, max=None)
    q1, q3 = (float(q) for q in np.percentile(means, [25, 75]))
    return Spread(classes=len(means), few_images=few, min=min(means), q1=q1, median=float(np.median(means)), q3=q3,
                  max=max(means))


def summary(rows: list[ClassRow], names: dict[str, str], stat: str) -> ClassSummary:
    """The unit page's summary of a profile (rows mean descending, as profile() gives them)."""
    members = [RankedClass(wnid=row.key, class_name=names[row.key], mean=row.mean, rank=rank, few_images=row.few_images)
               for rank, row in enumerate(rows, 1) if row.is_category]
    beats = _beats(rows, names)
    # One median class on the page: the box's median is the number the summary prints and the bars' dashed line
    # draw, claim_rules.category_median's, over the same classes.
    category = _spread([row for row in rows if row.is_category]).model_copy(update={"median": beats.median})
    return ClassSummary(
        stat=stat,
        classes=len(rows),
        top=[_entry(row, names) for row in rows[:SUMMARY_CLASSES]],
        bottom=[_entry(row, names) for row in rows[max(SUMMARY_CLASSES, len(rows) - SUMMARY_CLASSES):]],
        # Both boxes over the ranked classes (FEW_IMAGES or more), as claim_rules ranks them.
        category=CategorySpread(**category.model_dump(), members=members),
        rest=_spread([row for row in rows if not row.is_category]),
        beats_category_median=beats,
    )


def build(source: Source, layer: str, unit: int, p: ClassParams) -> ClassProfileContext:
    """`/layers/{layer}/units/{unit}/classes`: the unit's whole class profile on one stat."""
    run = require_run(source, p.run)
    units = require_unit(run, layer, unit)
    require_category(run, p.category)
    rows, names = class_profile(source, run, layer, unit, p.stat, p.category)
    if not rows:
        raise NotFound(f"no responses for unit {unit} of {layer}")
    return ClassProfileContext(
        run_id=run.run_id, layer=layer, unit=unit, units=units, category=p.category,
        categories=list(run.categories), stat=p.stat, few_images=claim_rules.FEW_IMAGES,
        classes=[_entry(row, names) for row in rows], beats_category_median=_beats(rows, names),
    )


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
    xaxis = titled_axis("", tickangle=-60, **({"tickvals": [x for x, _ in placed],
                                          "ticktext": [e.class_name for _, e in placed]} if labelled
                                         else {"showticklabels": False}))
    shapes = [] if median is None else [dashed_line(0, 1, median, median, "paper", "y")]
    annotations = [] if median is None else [{
        "x": 1, "y": median, "xref": "paper", "yref": "y", "xanchor": "right", "yanchor": "bottom",
        "text": f"{category}'s median class {median:.3g}", "showarrow": False, "font": {"size": 11}}]
    layout = base_layout(
        bargap=0.15, xaxis=xaxis, yaxis=titled_axis(f"mean response ({stat} of the pre-ReLU map)"),
        shapes=shapes, annotations=annotations, height=460 if labelled else 380,
        margin={"l": 60, "r": 20, "t": 30, "b": 170 if labelled else 30},
    )
    return {"data": data, "layout": layout}


def class_spread(summary: ClassSummary, category: str) -> Figure:
    """The category's classes, each a point on its class mean over a box, against the other classes' box.

    Both boxes are over the classes of FEW_IMAGES or more images, so the category box's median is its median class
    (the summary's number); a class of fewer images is a faded point beside the box, not in it.
    """
    members = summary.category.members
    ranked = [m for m in members if not m.few_images]
    row = f"{category} classes ({len(ranked)})"
    data: list[dict[str, Any]] = []
    if ranked:
        data.append({
            "type": "box",
            "orientation": "h",
            "name": row,
            "x": [m.mean for m in ranked],
            "text": [f"{m.class_name}: rank {m.rank} of {summary.classes}" for m in ranked],
            "boxpoints": "all",
            "jitter": 0.5,
            "pointpos": 0,
            "hovertemplate": "%{text}<br>mean %{x:.3g}<extra></extra>",
            "marker": {"color": RED, "size": 6},
            "line": {"color": RED},
        })
    few = [m for m in members if m.few_images]
    if few:
        data.append({
            "type": "scatter", "mode": "markers", "name": f"{category} classes of fewer than "
            f"{claim_rules.FEW_IMAGES} images ({len(few)})",
            "x": [m.mean for m in few], "y": [row] * len(few),
            "text": [f"{m.class_name}: rank {m.rank} of {summary.classes}, fewer than {claim_rules.FEW_IMAGES} "
                     "images (not in the box)" for m in few],
            "hovertemplate": "%{text}<br>mean %{x:.3g}<extra></extra>",
            "marker": {"color": RED, "size": 6, "opacity": 0.4, "symbol": "circle-open"},
        })
    rest = summary.rest
    if rest.classes:  # only its quartiles travel: the summary stays small with a thousand classes
        data.append({
            "type": "box", "orientation": "h", "name": f"other classes ({rest.classes})",
            "y": [f"other classes ({rest.classes})"],
            "q1": [rest.q1], "median": [rest.median], "q3": [rest.q3],
            "lowerfence": [rest.min], "upperfence": [rest.max],
            "marker": {"color": GREY}, "line": {"color": GREY},
        })
    layout = base_layout(
        xaxis=titled_axis(f"class mean ({summary.stat} of the pre-ReLU map)"), yaxis=titled_axis("", automargin=True),
        showlegend=False, height=240,
    )
    return {"data": data, "layout": layout}


def _classes_extras(ctx: ClassProfileContext, urls: Urls) -> dict[str, Any]:
    """The bar chart of every class."""
    return {"figure": class_bars([ctx.classes], ctx.stat, ctx.category, ctx.beats_category_median.median)}


PAGE: Page[ClassProfileContext] = Page(
    "classes.html", lambda ctx, urls: urls.classes(ctx.layer, ctx.unit, ctx.stat), _classes_extras
)
