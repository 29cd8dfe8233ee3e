"""A layer's controls: its selective units beside the rest, each unit's chance level, AUROC, and the
label-permutation null of the layer's claims. The statistics are worker.controls'; this module feeds
them a layer's data and caches what costs a scan of the layer's responses.

Routes: groups and p/q values come with `/api/layers/{layer}` and every row of `/api/layers`;
AUROC and the null (which read every response of the layer) only with `/api/layers/{layer}`, its
page and its CSV.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from app import queries, stored_controls
from app.db import Reader
from app.models import Group, Groups, NullStat, NullSummary
from app.params import ScoreParams
from worker import controls

FDR = 0.05  # a unit is marked significant at q < FDR (Benjamini-Hochberg across the layer's units)

NULL_STATS = {  # worker.controls.NULL_STATISTICS, described
    "selective": "units with SI ≥ threshold",
    "selective_negative": "selective units with in_bottom ≥ base rate",
    "median_gap": "median in_bottom, selective units minus the rest",
}


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def selective(si: float | None, threshold: float) -> bool:
    """A unit is selective at si >= threshold; one without an SI is not."""
    return si is not None and si >= threshold


def _group(rows: Sequence[queries.ScoreRow], base_rate: float) -> Group:
    top = np.array([r[2] for r in rows], dtype=np.float64)
    bottom = np.array([r[3] for r in rows], dtype=np.float64)
    at_base_rate = int((bottom >= base_rate).sum())
    return Group(
        units=len(rows), with_bottom_at_base_rate=at_base_rate,
        share_with_bottom_at_base_rate=at_base_rate / len(rows) if rows else None,
        median_in_top=float(np.median(top)) if rows else None,
        median_in_bottom=float(np.median(bottom)) if rows else None,
    )


def groups(rows: Sequence[queries.ScoreRow], threshold: float, base_rate: float) -> Groups:
    """The selective units and the rest: counts, in_bottom >= base rate (count, share), median in_top and in_bottom."""
    chosen = [selective(r[1], threshold) for r in rows]
    return Groups(
        selective=_group([r for r, c in zip(rows, chosen) if c], base_rate),
        rest=_group([r for r, c in zip(rows, chosen) if not c], base_rate),
    )


def chance(rows: Sequence[queries.ScoreRow], k: int, n_images: int, n_category: int) -> dict[str, np.ndarray]:
    """Per unit, in row order: p_top, p_bottom (hypergeometric upper tails) and their BH q_top, q_bottom."""
    out: dict[str, np.ndarray] = {}
    for side, column in (("top", 2), ("bottom", 3)):
        p = controls.hypergeom_sf_array([r[column] for r in rows], k, n_images, n_category)
        out[f"p_{side}"], out[f"q_{side}"] = p, controls.bh_qvalues(p)
    return out


class _LayerData:
    """A layer's responses on the SI stat and the category labels, read at most once per request."""

    def __init__(self, reader: Reader, run: queries.Run, layer: str, p: ScoreParams) -> None:
        self.reader, self.run, self.layer, self.p = reader, run, layer, p
        self._matrices: dict[str, np.ndarray] = {}

    @cached_property
    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        return queries.category_labels(self.reader, self.run, self.p.category)

    @cached_property
    def values(self) -> np.ndarray:
        return self.matrix(self.p.si_stat)

    def matrix(self, stat: str) -> np.ndarray:
        """The layer's (images x units) responses on a stat, read once per stat."""
        if stat not in self._matrices:
            self._matrices[stat] = queries.layer_matrix(self.reader, self.run, self.layer, stat)
        return self._matrices[stat]


def _layer_data(reader: Reader, run: queries.Run, layer: str, p: ScoreParams) -> _LayerData:
    """The request's one _LayerData for a layer and parameters: the AUROC, the null and the tails then
    share each response matrix instead of reading it again."""
    key = ("layer_data", run.run_id, layer, *sorted(p.model_dump().items()))
    if key not in reader.memo:
        reader.memo[key] = _LayerData(reader, run, layer, p)
    return reader.memo[key]


def _auroc(data: _LayerData) -> tuple[float | None, ...]:
    auroc = stored_controls.unit_column(data.reader, data.run, data.layer, data.p.category, data.p.si_stat, "auroc")
    if auroc is None:
        auroc = controls.auroc(data.values, data.labels[1])
    return tuple(_finite(a) for a in auroc)


def _summary(stats: Sequence[Sequence[float | None]], permutations: int, seed: int) -> NullSummary:
    """The page's null from (observed, null_mean, null_p95, p, valid) per statistic, in NULL_STATS order."""
    return NullSummary(permutations=permutations, seed=seed, stats=[
        NullStat(name=name, description=description, observed=_finite(observed), null_mean=_finite(mean),
                 null_p95=_finite(p95), p=_finite(p), valid=int(valid))
        for (name, description), (observed, mean, p95, p, valid) in zip(NULL_STATS.items(), stats)
    ])


def _null(data: _LayerData, k: int, permutations: int, seed: int) -> NullSummary | None:
    p = data.p
    stored = stored_controls.null_rows(data.reader, data.run, data.layer, category=p.category, si_stat=p.si_stat,
                                       neg_stat=p.neg_stat, k=k, threshold=p.threshold,
                                       permutations=permutations, seed=seed)
    if stored is not None:
        return _summary([stored[name][1:] for name in NULL_STATS], permutations, seed)
    image_ids, labels = data.labels
    if labels.all() or not labels.any():  # nothing to shuffle
        return None
    bottom = queries.bottom_rows(data.reader, data.run, data.layer, data.p.neg_stat, k, image_ids)
    result = controls.permutation_null(data.values, bottom, labels, threshold=p.threshold,
                                       permutations=permutations, seed=seed)
    stats = [getattr(result, name) for name in NULL_STATS]
    return _summary([(s.observed, s.null_mean, s.null_p95, s.p_value, s.valid) for s in stats],
                    result.permutations, result.seed)


def _tail(data: _LayerData, stat: str, upper: bool) -> np.ndarray:
    column = "tail_above" if upper else "tail_below"
    stored = stored_controls.unit_column(data.reader, data.run, data.layer, data.p.category, stat, column)
    return stored if stored is not None else controls.tail_shares(data.matrix(stat), data.labels[1], upper=upper)


def tails(reader: Reader, run: queries.Run, layer: str, p: ScoreParams) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, (below, above): the shares of the category's images far below and far above the rest.

    Below: under the rest's lower decile of neg_stat (the side the strongest negatives are ranked by);
    above: over the rest's upper decile of pos_stat. A unit blind to the category has about TAIL on
    each side; a one-sided (half-normal) unit has about 0 below. Stored at publication for every
    category and stat (worker.derived_layer); computed only for a DB without them. Cached per DB
    generation, category and the two stats.
    """
    data = _layer_data(reader, run, layer, p)
    key = (reader.generation.identity, run.run_id, layer, p.category, p.neg_stat, p.pos_stat, "tails")
    return reader.caches.scores.get_or_compute(key, lambda: (
        _tail(data, p.neg_stat, upper=False), _tail(data, p.pos_stat, upper=True),
    ))


def layer_tests(reader: Reader, run: queries.Run, layer: str, p: ScoreParams, k: int, *,
                permutations: int, seed: int) -> tuple[tuple[float | None, ...], NullSummary | None]:
    """(AUROC per unit, the permutation null) of a layer, each cached per DB generation and its parameters.

    Both are stored at publication (worker.derived_layer): AUROC for every category and stat, the
    null for the default parameters; a lookup then. For other parameters (or a DB without them)
    both read the layer's responses on the SI stat once (images x units floats); the null then
    costs P shuffles and P matrix products (about 2-3 s for 512 units, 6,308 images, P = 1000 on
    two shared cores; 30-45 s at 286,000 images). Warm, a lookup.
    """
    data = _layer_data(reader, run, layer, p)
    base = (reader.generation.identity, run.run_id, layer, p.category, p.si_stat)
    auroc = reader.caches.scores.get_or_compute((*base, "auroc"), lambda: _auroc(data))
    null = reader.caches.scores.get_or_compute(
        (*base, "null", p.neg_stat, k, p.threshold, permutations, seed), lambda: _null(data, k, permutations, seed)
    )
    return auroc, null
