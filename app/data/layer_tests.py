"""A layer's tests that read every response of the layer: the label-permutation null, the category's
tails, and split-half SI. Each is publication's stored value when the parameters are the stored
ones, else computed with unitscope's statistics over the layer's matrices (each read once per
request: Source.matrix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app import heavy
from unitscope import claim_rules, nulls, schema, stats
from unitscope import tails as category_tails
from unitscope.data.runs import Run, require_category, table_names
from unitscope.data.scores import (
    bottom_rows,
    category_labels,
    layer_matrix,
    stored_unit_column,
    whole_layer,
)
from unitscope.data.source import Source, stored_or_computed

NULL_STATS = {  # unitscope.nulls.NULL_STATISTICS, described
    "selective": "units with SI ≥ threshold",
    "selective_negative": "selective units with in_bottom ≥ base rate",
    "median_gap": "median in_bottom, selective units minus the rest",
}
NullRow = tuple[float, float, float, float, int]  # observed, null_mean, null_p95, p, valid


@dataclass(frozen=True)
class Null:
    """The null of the layer's claims: a row per statistic of NULL_STATS, in its order."""

    permutations: int
    seed: int
    rows: tuple[NullRow, ...]


def _stored_null(reader: Source, run: Run, layer: str, category: str, si_stat: str, neg_stat: str, k: int,
                 threshold: float, permutations: int, seed: int) -> Null | None:
    if schema.LAYER_NULL not in table_names(reader):
        return None
    rows = {r[0]: r[1:] for r in reader.rows(
        f"""SELECT statistic, observed, null_mean, null_p95, p, valid FROM {schema.LAYER_NULL}
            WHERE run_id = $run_id AND layer = $layer AND category = $category AND si_stat = $si_stat
              AND neg_stat = $neg_stat AND k = $k AND threshold = $threshold
              AND permutations = $permutations AND seed = $seed""",
        {"run_id": run.run_id, "layer": layer, "category": category, "si_stat": si_stat, "neg_stat": neg_stat,
         "k": k, "threshold": threshold, "permutations": permutations, "seed": seed},
    )}
    if not rows:
        return None
    return Null(permutations, seed, tuple(rows[name] for name in NULL_STATS))


def _computed_nulls(reader: Source, run: Run, layer: str, category: str, si_stat: str, neg_stat: str, k: int,
                    thresholds: tuple[float, ...], permutations: int, seed: int) -> dict[float, Null]:
    """The null at each threshold from one set of shuffles (nulls.permutation_nulls); empty when the category
    or the rest has no image."""
    image_ids, labels = category_labels(reader, run, category)
    if labels.all() or not labels.any():  # nothing to shuffle
        return {}
    bottom = bottom_rows(reader, run, layer, neg_stat, k, image_ids)
    results = nulls.permutation_nulls(layer_matrix(reader, run, layer, si_stat), bottom, labels, thresholds=thresholds,
                                      permutations=permutations, seed=seed, checkpoint=heavy.checkpoint)
    out = {}
    for result in results:
        found = [getattr(result, name) for name in NULL_STATS]
        out[result.threshold] = Null(result.permutations, result.seed,
                                     tuple((s.observed, s.null_mean, s.null_p95, s.p_value, s.valid) for s in found))
    return out


def null(reader: Source, run: Run, layer: str, *, category: str, si_stat: str, neg_stat: str, k: int,
         threshold: float, permutations: int, seed: int) -> Null | None:
    """The label-permutation null of the layer's claims (None when the category or the rest is empty).

    Stored at publication for the claims' grid (unitscope.claim_rules.GRID_*) at the default k: a lookup
    then. Otherwise P shuffles and P matrix products over the layer's responses on the SI stat (about
    2-3 s for 512 units, 6,308 images, P = 1000 on two shared cores; 30-45 s at 286,000 images), for
    this threshold and the grid's together (the shuffles are shared), each cached.
    """
    thresholds = tuple(sorted({threshold, *claim_rules.GRID_THRESHOLDS}))
    base = (run.run_id, layer, category, si_stat, neg_stat, k, permutations, seed)

    def computed() -> Null | None:
        return reader.cached((*base, "nulls", thresholds), lambda: whole_layer(reader, run, layer, lambda: _computed_nulls(
            reader, run, layer, category, si_stat, neg_stat, k, thresholds, permutations, seed))).get(threshold)

    return reader.cached((*base, "null", threshold), lambda: stored_or_computed(
        lambda: _stored_null(reader, run, layer, category, si_stat, neg_stat, k, threshold, permutations, seed),
        computed)[0])


def tails(reader: Source, run: Run, layer: str, *, category: str, neg_stat: str,
          pos_stat: str) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, (below, above): the shares of the category's images far below and far above the rest.

    Below: under the rest's lower decile of neg_stat (the side the strongest negatives are ranked by);
    above: over the rest's upper decile of pos_stat. A unit blind to the category has about TAIL on
    each side; a one-sided (half-normal) unit has about 0 below.
    """
    def tail(stat: str, upper: bool) -> np.ndarray:
        column = "tail_above" if upper else "tail_below"
        return stored_or_computed(
            lambda: stored_unit_column(reader, run, layer, category, stat, column),
            lambda: whole_layer(reader, run, layer, lambda: category_tails.tail_shares(
                layer_matrix(reader, run, layer, stat), category_labels(reader, run, category)[1], upper=upper)),
        )[0]

    return reader.cached((run.run_id, layer, category, neg_stat, pos_stat, "tails"),
                         lambda: (tail(neg_stat, upper=False), tail(pos_stat, upper=True)))


SiByUnit = dict[int, float | None]


@dataclass(frozen=True)
class Halves:
    """Per unit SI of each half of the images (even and odd ids), and each half's images."""

    si_a: SiByUnit
    si_b: SiByUnit
    images_a: int
    images_b: int


def _by_unit(si: np.ndarray) -> SiByUnit:
    return {u: None if math.isnan(v) else v for u, v in enumerate(si.tolist())}


def _stored_halves(reader: Source, run: Run, layer: str, category: str, stat: str) -> tuple[SiByUnit, SiByUnit] | None:
    a, b = (stored_unit_column(reader, run, layer, category, stat, c) for c in ("si_half_a", "si_half_b"))
    return None if a is None or b is None else (_by_unit(a), _by_unit(b))


def _computed_halves(reader: Source, run: Run, layer: str, category: str, stat: str) -> tuple[SiByUnit, SiByUnit]:
    image_ids, labels = category_labels(reader, run, category)
    a, b = stats.split_half_si(layer_matrix(reader, run, layer, stat), [labels], image_ids)[0]
    return _by_unit(a), _by_unit(b)


def split_half(reader: Source, run: Run, layer: str, category: str, stat: str) -> Halves:
    """Each unit's SI on the even and on the odd image ids, each half min-max normalised over its own
    images as if it were the whole run (unitscope.stats.split_half_si)."""
    require_category(run, category)

    def read() -> Halves:
        si_a, si_b = stored_or_computed(lambda: _stored_halves(reader, run, layer, category, stat),
                                        lambda: whole_layer(reader, run, layer, lambda: _computed_halves(
                                            reader, run, layer, category, stat)))[0]
        [(images_a, images_b)] = reader.rows(
            f"""SELECT count(*) FILTER (WHERE image_id % 2 = 0), count(*) FILTER (WHERE image_id % 2 = 1)
                FROM {schema.IMAGES} WHERE run_id = $run_id""",
            {"run_id": run.run_id},
        )
        return Halves(si_a, si_b, images_a, images_b)

    return reader.cached((run.run_id, layer, category, "split_half", stat), read)
