"""What a unit page shows of the interventions: its optimised images (worker.visualize) with the network's reading
of each, Distill's activation spectrum, and, where it was ablated alone (worker.ablate --units), the classes its
ablation hurts and helps most.

The spectrum ranks the dataset images on the mean statistic, the one the optimisation drives, so that every
value along it is comparable: negative-optimised, strongest negative, near zero, strongest positive,
positive-optimised.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from app.params import THUMB_SIZES
from app.urls import Urls
from unitscope.data.interventions import (
    Visualization,
    ablation_groups,
    category_mask,
    hidden_unit_ablation,
    network_classes,
    unit_visualizations,
)
from unitscope.data.rankings import rankings
from unitscope.data.runs import Run
from unitscope.data.source import Source

SPECTRUM_N = 3  # dataset images per column of the spectrum
TOP = 5  # classes listed per image, and per side of an ablation's effect


class ClassP(BaseModel):
    """One of the network's classes and its probability."""

    class_index: int
    class_name: str
    p: float


class VisualizationEntry(BaseModel):
    """An image optimised to drive the unit up (positive) or down (negative), and the network's reading of it."""

    direction: str
    index: int
    image_url: str
    objective: float = Field(description="the unit's mean pre-ReLU response to the image")
    dataset_extreme: float = Field(description="the run's largest (positive) or smallest (negative) mean response")
    top5: list[ClassP]
    category_p: float | None = Field(description="the category's share of the network's probability")


class SpectrumItem(BaseModel):
    """One image along the activation spectrum, with the unit's mean response to it."""

    kind: str = Field(description="negative_optimised | negative | near_zero | positive | positive_optimised")
    value: float
    thumbnail: str
    link: str
    label: str
    is_category: bool | None = None


class Convergence(BaseModel):
    """The sanity check: the optimised images go beyond the unit's most extreme dataset image on the same statistic."""

    positive: bool | None
    negative: bool | None
    message: str | None = Field(description="null when both directions went beyond the dataset")


class ClassEffect(BaseModel):
    """How a unit's ablation changes one class: its mean probability of the true class and its top-1 accuracy."""

    class_index: int
    class_name: str
    n: int
    delta_p: float
    delta_top1: float


class UnitAblation(BaseModel):
    """The unit ablated alone: the classes it hurts and helps most."""

    hurts: list[ClassEffect]
    helps: list[ClassEffect]
    delta_top1: float = Field(description="change in top-1 accuracy over every image")


def _entry(v: Visualization, run: Run, layer: str, names: tuple[str, ...], mask: np.ndarray | None,
           urls: Urls) -> VisualizationEntry:
    top = np.argsort(-v.probs, kind="stable")[:TOP]
    return VisualizationEntry(
        direction=v.direction, index=v.index, objective=v.objective, dataset_extreme=v.dataset_extreme,
        image_url=urls.visualization(run.run_id, layer, v.unit, v.direction, v.index),
        top5=[ClassP(class_index=int(c), class_name=names[c] if c < len(names) else str(c), p=float(v.probs[c]))
              for c in top],
        category_p=None if mask is None else v.category_p(mask),
    )


def visualizations(source: Source, run: Run, layer: str, unit: int, category: str,
                   urls: Urls) -> list[VisualizationEntry]:
    """The unit's optimised images, negative first; empty where none were made."""
    stored = unit_visualizations(source, run, layer, unit)
    if not stored:
        return []
    classes = network_classes(source, run)
    names = classes.names if classes else ()
    mask = category_mask(source, run, classes, category) if classes else None
    return [_entry(v, run, layer, names, mask, urls) for v in stored]


def convergence(entries: list[VisualizationEntry]) -> Convergence | None:
    """Did each direction's images beat the dataset's extreme? None without images."""
    if not entries:
        return None
    beyond = {}
    for direction, sign in (("positive", 1), ("negative", -1)):
        mine = [e for e in entries if e.direction == direction]
        beyond[direction] = all(sign * (e.objective - e.dataset_extreme) > 0 for e in mine) if mine else None
    failed = [d for d, ok in beyond.items() if ok is False]
    message = None if not failed else (
        f"the optimisation did not converge ({' and '.join(failed)}): some optimised images drive the unit less far "
        "than its most extreme dataset image on the same statistic (more --steps)")
    return Convergence(positive=beyond["positive"], negative=beyond["negative"], message=message)


def spectrum(source: Source, run: Run, layer: str, unit: int, category: str, entries: list[VisualizationEntry],
             urls: Urls) -> list[SpectrumItem]:
    """Distill's activation spectrum, from the most negative to the most positive; empty without optimised images."""
    if not entries:
        return []
    ranked = rankings(source, run, layer, unit, {"negative": "mean", "near_zero": "mean", "positive": "mean"},
                      category, SPECTRUM_N)

    def optimised(direction: str) -> list[SpectrumItem]:
        return [SpectrumItem(kind=f"{direction}_optimised", value=e.objective, thumbnail=e.image_url, link=e.image_url,
                             label=e.top5[0].class_name if e.top5 else direction)
                for e in entries if e.direction == direction]

    def dataset(kind: str, reverse: bool) -> list[SpectrumItem]:
        rows = ranked[kind][::-1] if reverse else ranked[kind]
        if kind == "near_zero":  # ranked by |value|: on the spectrum, in the order of the values, as the rest
            rows = sorted(rows, key=lambda row: row[-1])
        return [SpectrumItem(kind=kind, value=float(value), thumbnail=urls.image(run.run_id, image_id, THUMB_SIZES[1]),
                             link=urls.image(run.run_id, image_id), label=class_name, is_category=bool(is_cat))
                for image_id, _, class_name, is_cat, value in rows]

    return [*optimised("negative"), *dataset("negative", False), *dataset("near_zero", False),
            *dataset("positive", True), *optimised("positive")]


def unit_ablation(source: Source, run: Run, layer: str, unit: int) -> UnitAblation | None:
    """The classes the unit's own ablation hurts and helps most (by the true class's mean probability)."""
    groups = ablation_groups(source, run, layer)
    base = next((g for g in groups if g.kind == "baseline"), None)
    mine = next((g for g in groups if g.kind == "unit" and g.units == (unit,)), None)
    classes = network_classes(source, run)
    if base is None or mine is None or not base.n.sum():
        return None
    present = np.flatnonzero(base.n)
    n = base.n[present]
    delta_p = (mine.p_true[present] - base.p_true[present]) / n
    delta_top1 = (mine.top1[present] - base.top1[present]) / n
    names = classes.names if classes else ()

    def effect(i: int) -> ClassEffect:
        c = int(present[i])
        return ClassEffect(class_index=c, class_name=names[c] if c < len(names) else str(c), n=int(n[i]),
                           delta_p=float(delta_p[i]), delta_top1=float(delta_top1[i]))

    order = np.argsort(delta_p, kind="stable")
    return UnitAblation(hurts=[effect(i) for i in order[:TOP] if delta_p[i] < 0],
                        helps=[effect(i) for i in order[::-1][:TOP] if delta_p[i] > 0],
                        delta_top1=float((mine.top1.sum() - base.top1.sum()) / base.n.sum()))


def hidden_note(source: Source, run: Run, layer: str, unit: int) -> str | None:
    """Why the unit's own ablation, stored, is not shown: it was tallied on other images than the baseline's."""
    images = hidden_unit_ablation(source, run, layer, unit)
    if images is None:
        return None
    groups = ablation_groups(source, run, layer)
    baseline = f"on {groups[0].images:,} images" if groups else "missing"
    return (f"ablated alone on {images:,} images by an earlier job, and the latest ablate job's baseline of {layer} is "
            f"{baseline}: a group is compared only on its baseline's images (python -m worker ablate --db DB --layer "
            f"{layer} --units {unit} with that job's --limit ablates it again)")
