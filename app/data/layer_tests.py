"""A layer's tests that read every response of the layer: the label-permutation null and the category's
tails (split-half SI, which the Python API shows too, is unitscope.data.split_half's). Each is publication's
stored value when the parameters are the stored ones, else computed with unitscope's statistics over the layer's
matrices (each read once per request: Source.matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app import heavy
from unitscope import claim_rules, nulls, schema
from unitscope import tails as category_tails
from unitscope.data.runs import Run, table_names
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
