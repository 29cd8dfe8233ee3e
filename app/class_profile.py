"""A unit's class profile: its mean and median response to every class, the category's classes marked.

It tests the study's Discussion: "images from totally different categories, such as cars or
cups, evoke higher activation in a dog-selective neuron than images of dogs of other breeds".
Publication stores every unit's profile (worker.derived_unit); `/layers/{layer}/units/{unit}/classes`
shows all of it and the unit page a summary (ClassSummary). Which classes beat the category is controls' rule.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from app import queries
from app.db import Reader
from app.params import NAME_MAX, RunParams, StatName
from app.problems import NotFound
from worker import controls, schema, unit_sql

FEW_IMAGES = 3  # a class with fewer images is flagged: its mean rests on one or two responses
SUMMARY_CLASSES = 20  # the unit page shows this many classes from each end of the profile
DEFAULT_STAT = schema.DEFAULT_SI_STAT


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
    few_images: bool = Field(description=f"n < {FEW_IMAGES}: shown, but its mean is too thin to rank it by")


class ClassMean(BaseModel):
    """A class and its mean response."""

    wnid: str
    class_name: str
    mean: float


class BeatsCategoryMedian(BaseModel):
    """The non-category classes whose mean is above the category's median class."""

    count: int
    median: float | None = Field(
        description="the category's median class: the median over its classes of their means; null without one")
    classes: list[ClassMean] = Field(description="in profile order, highest mean first")


class RankedClass(ClassMean):
    """A class with its place in the whole profile."""

    rank: int = Field(description="1 for the class with the highest mean")


class Spread(BaseModel):
    """How a group of classes' means spread: quartiles (numpy's linear percentiles); null for no class."""

    classes: int
    min: float | None
    q1: float | None
    median: float | None
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


Profile = tuple[list[controls.ClassRow], dict[str, str]]  # rows mean descending, each WNID's class name


def profile(reader: Reader, run: queries.Run, layer: str, unit: int, stat: str, category: str) -> Profile:
    """The unit's class profile, mean descending, and each WNID's class name.

    The stored profile when publication wrote it (category-free: the category's classes are marked
    here), else one grouped query over the unit's responses (about 0.1 s at 286,000 images). Kept
    in the unit LRU, so the class page and the unit pages that share its stat and category reuse
    it. Callers must not change what it returns.
    """
    def query() -> Profile:
        q = {"run_id": run.run_id, "layer": layer, "unit": unit, "category": category}
        rows = reader.rows(unit_sql.marked_profile_sql(unit_sql.stored_profile_sql()), {**q, "stat": stat})
        if not rows:
            rows = reader.rows(unit_sql.marked_profile_sql(unit_sql.profile_sql(stat, one_unit=True)), q)
        return ([controls.ClassRow(wnid, n, float(mean), float(median), bool(is_cat), n < FEW_IMAGES)
                 for wnid, _, n, mean, median, is_cat in rows],
                {wnid: name for wnid, name, *_ in rows})

    key = (reader.generation.identity, run.run_id, "class_profile", layer, unit, stat, category)
    return reader.caches.units.get_or_compute(key, query)


def _entry(row: controls.ClassRow, names: dict[str, str]) -> ClassEntry:
    return ClassEntry(wnid=row.key, class_name=names[row.key], n=row.n, mean=row.mean, median=row.median,
                      is_category=row.is_category, few_images=row.few_images)


def _beats(rows: list[controls.ClassRow], names: dict[str, str]) -> BeatsCategoryMedian:
    means = {row.key: row.mean for row in rows}
    beaten = [ClassMean(wnid=key, class_name=names[key], mean=means[key])
              for key in controls.beats_category_median(rows)]
    return BeatsCategoryMedian(count=len(beaten), median=controls.category_median(rows), classes=beaten)


def _spread(means: list[float], median: float | None) -> Spread:
    if not means:
        return Spread(classes=0, min=None, q1=None, median=None, q3=None, max=None)
    q1, q3 = (float(q) for q in np.percentile(means, [25, 75]))
    return Spread(classes=len(means), min=min(means), q1=q1, median=median, q3=q3, max=max(means))


def summary(rows: list[controls.ClassRow], names: dict[str, str], stat: str) -> ClassSummary:
    """The unit page's summary of a profile (rows mean descending, as profile() gives them)."""
    members = [RankedClass(wnid=row.key, class_name=names[row.key], mean=row.mean, rank=rank)
               for rank, row in enumerate(rows, 1) if row.is_category]
    rest = [row.mean for row in rows if not row.is_category]
    return ClassSummary(
        stat=stat,
        classes=len(rows),
        top=[_entry(row, names) for row in rows[:SUMMARY_CLASSES]],
        bottom=[_entry(row, names) for row in rows[max(SUMMARY_CLASSES, len(rows) - SUMMARY_CLASSES):]],
        category=CategorySpread(**_spread([m.mean for m in members], controls.category_median(rows)).model_dump(),
                                members=members),
        rest=_spread(rest, float(np.median(rest)) if rest else None),
        beats_category_median=_beats(rows, names),
    )


def context(reader: Reader, layer: str, unit: int, p: ClassParams) -> ClassProfileContext:
    """`/layers/{layer}/units/{unit}/classes`: the unit's whole class profile on one stat."""
    run = queries.require_run(reader, p.run)
    units = queries.require_unit(run, layer, unit)
    queries.require_category(run, p.category)
    rows, names = profile(reader, run, layer, unit, p.stat, p.category)
    if not rows:
        raise NotFound(f"no responses for unit {unit} of {layer}")
    return ClassProfileContext(
        run_id=run.run_id, layer=layer, unit=unit, units=units, category=p.category,
        categories=list(run.categories), stat=p.stat, few_images=FEW_IMAGES,
        classes=[_entry(row, names) for row in rows], beats_category_median=_beats(rows, names),
    )
