"""The interventions' stored results, read: feature visualisations, ablation groups and the network's classes.

Both are written by their own worker jobs (worker.visualize, worker.ablate) on a published run; a run without
them reads as empty. Which units are selective is the layer page's rule (SI at or above a threshold, from the
stored unit_si), so the jobs and the pages pick the same units.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from unitscope import schema, stats
from unitscope.data.images import category_wnids
from unitscope.data.runs import Run, table_names
from unitscope.data.source import Source


def selective_units(source: Source, run: Run, layer: str, category: str, si_stat: str, threshold: float) -> list[int]:
    """The layer's units with SI (on si_stat, for the category) at or above threshold, highest SI first."""
    rows = source.rows(
        f"SELECT unit FROM {schema.UNIT_SI} WHERE run_id = $run AND layer = $layer AND category = $category "
        "AND stat = $stat AND si >= $threshold ORDER BY si DESC, unit",
        {"run": run.run_id, "layer": layer, "category": category, "stat": si_stat, "threshold": threshold},
    )
    return [int(r[0]) for r in rows]


def control_units(units: int, exclude: list[int], n: int, seed: int) -> list[int]:
    """n units drawn at random (seeded) from those of the layer not in `exclude`, in unit order."""
    rest = np.setdiff1d(np.arange(units), np.asarray(exclude, dtype=int))
    return sorted(int(u) for u in np.random.default_rng(seed).choice(rest, size=min(n, rest.size), replace=False))


@dataclass(frozen=True)
class NetworkClasses:
    """The network's output classes, by logit index."""

    wnids: tuple[str, ...]
    names: tuple[str, ...]

    def mask(self, wnids: frozenset[str]) -> np.ndarray:
        """Which classes are among `wnids` (a category's)."""
        return np.array([w in wnids for w in self.wnids], dtype=bool)


def network_classes(source: Source, run: Run) -> NetworkClasses | None:
    """The classes written with the run's interventions; None when it has none."""
    if schema.NETWORK_CLASSES not in table_names(source):
        return None
    rows = source.cached(("network_classes", run.run_id), lambda: source.rows(
        f"SELECT wnid, class_name FROM {schema.NETWORK_CLASSES} WHERE run_id = $run ORDER BY class_index",
        {"run": run.run_id}))
    return NetworkClasses(tuple(r[0] for r in rows), tuple(r[1] for r in rows)) if rows else None


def category_mask(source: Source, run: Run, classes: NetworkClasses, category: str) -> np.ndarray:
    """Which of the network's classes are in the category."""
    return classes.mask(category_wnids(source, run.run_id, category))


@dataclass(frozen=True)
class Visualization:
    """One optimised image of a unit (schema.UNIT_VISUALIZATIONS), its network reading as probabilities."""

    unit: int
    direction: str
    index: int
    objective: float
    dataset_extreme: float
    steps: int
    size: int
    seed: int
    probs: np.ndarray

    def category_p(self, mask: np.ndarray) -> float:
        """The category's share of the network's probability on the image (mask: NetworkClasses.mask)."""
        return float(self.probs[: mask.size][mask].sum())


_VIS_COLUMNS = "unit, direction, idx, objective, dataset_extreme, steps, size, seed, probs"


def layer_visualizations(source: Source, run: Run, layer: str) -> list[Visualization]:
    """Every optimised image of a layer, by unit, negative first (cached per DB generation: the claims page reads them
    for every cell, a unit page its unit's)."""
    def read() -> list[Visualization]:
        if schema.UNIT_VISUALIZATIONS not in table_names(source):
            return []
        rows = source.rows(f"SELECT {_VIS_COLUMNS} FROM {schema.UNIT_VISUALIZATIONS} "
                           "WHERE run_id = $run AND layer = $layer ORDER BY unit, direction, idx",
                           {"run": run.run_id, "layer": layer})
        return [Visualization(int(u), d, int(i), float(o), float(e), int(st), int(sz), int(sd),
                              np.asarray(p, dtype=np.float64)) for u, d, i, o, e, st, sz, sd, p in rows]

    return source.cached(("layer_visualizations", run.run_id, layer), read)


def unit_visualizations(source: Source, run: Run, layer: str, unit: int) -> list[Visualization]:
    """A unit's optimised images, negative first (from the layer's, read once)."""
    return [v for v in layer_visualizations(source, run, layer) if v.unit == unit]


def visualization_png(source: Source, run: Run, layer: str, unit: int, direction: str, index: int) -> bytes | None:
    """One optimised image's PNG bytes, or None."""
    if schema.UNIT_VISUALIZATIONS not in table_names(source):
        return None
    rows = source.rows(
        f"SELECT png FROM {schema.UNIT_VISUALIZATIONS} WHERE run_id = $run AND layer = $layer AND unit = $unit "
        "AND direction = $direction AND idx = $index",
        {"run": run.run_id, "layer": layer, "unit": unit, "direction": direction, "index": index})
    return bytes(rows[0][0]) if rows else None


@dataclass(frozen=True)
class AblationGroup:
    """One ablated group of a layer's units and the network's per-class results with it (by class index)."""

    name: str
    kind: str  # 'baseline' | 'selective' | 'random' | 'unit'
    category: str | None
    si_stat: str | None
    threshold: float | None
    images: int
    units: tuple[int, ...]
    n: np.ndarray  # images per class
    top1: np.ndarray
    top5: np.ndarray
    p_true: np.ndarray  # sums of the true class's probability

    def accuracy(self, mask: np.ndarray) -> tuple[float | None, int]:
        """Top-1 accuracy over the classes of `mask`, and the images it is over."""
        n = int(self.n[mask].sum())
        return (float(self.top1[mask].sum() / n) if n else None), n


def ablation_groups(source: Source, run: Run, layer: str) -> list[AblationGroup]:
    """The layer's ablated groups tallied on the baseline's images, baseline first, then by kind and name.

    A group tallied on another number of images (an earlier job's --limit) is left out: its deltas would compare
    different images (hidden_ablations counts them)."""
    return _stored_groups(source, run, layer)[0]


def hidden_ablations(source: Source, run: Run, layer: str) -> dict[int, int]:
    """Images -> how many of the layer's stored groups were tallied on that many, for every count but the baseline's:
    the groups ablation_groups leaves out (an earlier ablate job's --limit), so a page can say why, not "none"."""
    return dict(sorted(Counter(g.images for g in _stored_groups(source, run, layer)[1]).items()))


def hidden_unit_ablation(source: Source, run: Run, layer: str, unit: int) -> int | None:
    """The images the unit's own ablation was tallied on when ablation_groups leaves it out (another job's images
    than the baseline's), else None."""
    return next((g.images for g in _stored_groups(source, run, layer)[1] if g.kind == "unit" and g.units == (unit,)),
                None)


def _stored_groups(source: Source, run: Run, layer: str) -> tuple[list[AblationGroup], list[AblationGroup]]:
    """The layer's groups on the baseline's images (ablation_groups), and the others."""
    if schema.ABLATION_GROUPS not in table_names(source):
        return [], []

    def read() -> tuple[list[AblationGroup], list[AblationGroup]]:
        groups = source.rows(
            f"SELECT name, kind, category, si_stat, threshold, images, units FROM {schema.ABLATION_GROUPS} "
            "WHERE run_id = $run AND layer = $layer", {"run": run.run_id, "layer": layer})
        data = source.arrays(
            f"SELECT name, class_index, n, top1, top5, p_true FROM {schema.ABLATION_CLASSES} "
            "WHERE run_id = $run AND layer = $layer ORDER BY name, class_index", {"run": run.run_id, "layer": layer})
        classes = int(data["class_index"].max()) + 1 if data["class_index"].size else 0
        # The rows come sorted by name: each group's is one slice (per-unit ablation makes hundreds of groups).
        names, starts = np.unique(data["name"], return_index=True)
        bounds = dict(zip(names.tolist(), zip(starts.tolist(), [*starts[1:].tolist(), len(data["name"])])))
        out = []
        for name, kind, category, si_stat, threshold, images, units in groups:
            lo, hi = bounds.get(name, (0, 0))
            idx = data["class_index"][lo:hi].astype(int)
            columns = {}
            for column in ("n", "top1", "top5", "p_true"):
                full = np.zeros(classes, dtype=np.float64 if column == "p_true" else np.int64)
                full[idx] = data[column][lo:hi]
                columns[column] = full
            out.append(AblationGroup(name, kind, category, si_stat, threshold, int(images),
                                     tuple(int(u) for u in units), **columns))
        order = {"baseline": 0, "selective": 1, "random": 2, "unit": 3}
        base = next((g for g in out if g.kind == "baseline"), None)
        current = [g for g in out if base is not None and g.images == base.images]
        hidden = [g for g in out if base is None or g.images != base.images]
        return sorted(current, key=lambda g: (order.get(g.kind, 9), _natural(g.name))), hidden

    return source.cached(("ablation_groups", run.run_id, layer), read)


def _natural(name: str) -> tuple[object, ...]:
    """'random dog 10' after 'random dog 9'."""
    head, _, tail = name.rpartition(" ")
    return (head, int(tail)) if tail.isdigit() else (name, -1)


@dataclass(frozen=True)
class GroupEffect:
    """An ablated group's top-1 accuracy on the category and on the rest, and each one's change from the baseline."""

    name: str
    kind: str
    units: tuple[int, ...]
    top1_category: float | None
    top1_rest: float | None
    delta_category: float | None
    delta_rest: float | None


@dataclass(frozen=True)
class Ablation:
    """A layer's ablation for one selection (category, si_stat, threshold): the baseline, the selective group first,
    then the random groups and the single units, and the permutation p of the selective group over the random ones."""

    top1: float | None
    top5: float | None
    n: int
    n_category: int
    n_rest: int
    top1_category: float | None
    top1_rest: float | None
    groups: list[GroupEffect]
    random_groups: int
    p: float | None


def _effect(group: AblationGroup, base: AblationGroup, cat: np.ndarray) -> GroupEffect:
    top1_cat, top1_rest = group.accuracy(cat)[0], group.accuracy(~cat)[0]
    base_cat, base_rest = base.accuracy(cat)[0], base.accuracy(~cat)[0]
    return GroupEffect(group.name, group.kind, group.units, top1_cat, top1_rest,
                       None if top1_cat is None or base_cat is None else top1_cat - base_cat,
                       None if top1_rest is None or base_rest is None else top1_rest - base_rest)


def layer_ablation(source: Source, run: Run, layer: str, category: str, si_stat: str,
                   threshold: float) -> Ablation | None:
    """The stored ablation of the layer's units selective for `category` at (si_stat, threshold); None when not run.

    A delta is a group's top-1 accuracy minus the baseline's, over the category's classes or the others; p is
    unitscope.stats.group_p of the selective group's category delta among the random groups'."""
    groups = ablation_groups(source, run, layer)
    classes = network_classes(source, run)
    base = next((g for g in groups if g.kind == "baseline"), None)
    selection = (category, si_stat, threshold)
    selective = next((g for g in groups if g.kind == "selective" and (g.category, g.si_stat, g.threshold) == selection),
                     None)
    if base is None or classes is None or selective is None or not base.n.sum():
        return None
    cat = category_mask(source, run, classes, category)[: base.n.size]
    random = [g for g in groups if g.kind == "random" and (g.category, g.si_stat, g.threshold) == selection]
    effects = [_effect(g, base, cat) for g in [selective, *random, *(g for g in groups if g.kind == "unit")]]
    null = [e.delta_category for e in effects[1: 1 + len(random)] if e.delta_category is not None]
    sel = effects[0].delta_category
    top1, n = base.accuracy(np.ones_like(cat))
    return Ablation(top1=top1, top5=float(base.top5.sum() / n), n=n, n_category=int(base.n[cat].sum()),
                    n_rest=int(base.n[~cat].sum()), top1_category=base.accuracy(cat)[0],
                    top1_rest=base.accuracy(~cat)[0], groups=effects, random_groups=len(random),
                    p=None if sel is None else stats.group_p(sel, null))
