"""Split-half reliability of SI: each unit's SI on the even against the odd image ids of one run."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app import correlation, queries, stored_controls
from app.db import Reader
from app.models import SplitHalf
from worker import metrics_sql, schema


@dataclass(frozen=True)
class Halves:
    """Per unit SI of each half, and the layer's summary."""

    si_a: dict[int, float | None]
    si_b: dict[int, float | None]
    summary: SplitHalf


def split_half(reader: Reader, run: queries.Run, layer: str, category: str, stat: str) -> Halves:
    """Each unit's SI on the even and on the odd image ids, cached per parameters: stored at publication
    for every category and stat (worker.derived_layer), else one grouped scan.

    Each half is min-max normalised over its own images, as if it were the whole run (see
    worker.metrics_sql.split_half_si_sql); a unit whose SI does not replicate is noise.
    """
    queries.require_category(run, category)
    units = queries.require_layer(run, layer)[0]
    key = (reader.generation.identity, run.run_id, layer, category, "split_half", stat)
    return reader.caches.scores.get_or_compute(key, lambda: _split_half(reader, run, layer, units, category, stat))


SiByUnit = dict[int, float | None]


def _stored(reader: Reader, run: queries.Run, layer: str, category: str, stat: str) -> tuple[SiByUnit, SiByUnit] | None:
    """The halves' SIs publication stored (worker.derived_layer), or None."""
    a, b = (stored_controls.unit_column(reader, run, layer, category, stat, c) for c in ("si_half_a", "si_half_b"))
    if a is None or b is None:
        return None
    return _by_unit(a), _by_unit(b)


def _by_unit(si: np.ndarray) -> SiByUnit:
    return {u: None if math.isnan(v) else v for u, v in enumerate(si.tolist())}


def _computed(reader: Reader, run: queries.Run, layer: str, units: int, category: str,
              stat: str) -> tuple[SiByUnit, SiByUnit]:
    """The halves' SIs from one grouped scan of the layer's responses."""
    q = {"run_id": run.run_id, "layer": layer, "category": category}
    halves: tuple[SiByUnit, SiByUnit] = ({}, {})
    for unit, half, row_stat, si in reader.rows(metrics_sql.split_half_si_sql(), q):
        if row_stat == stat:
            halves[half][int(unit)] = None if si is None else float(si)
    return {u: halves[0].get(u) for u in range(units)}, {u: halves[1].get(u) for u in range(units)}


def _split_half(reader: Reader, run: queries.Run, layer: str, units: int, category: str, stat: str) -> Halves:
    si_a, si_b = _stored(reader, run, layer, category, stat) or _computed(reader, run, layer, units, category, stat)
    [(images_a, images_b)] = reader.rows(
        f"""SELECT count(*) FILTER (WHERE image_id % 2 = 0), count(*) FILTER (WHERE image_id % 2 = 1)
            FROM {schema.IMAGES} WHERE run_id = $run_id""",
        {"run_id": run.run_id},
    )
    a, b = list(si_a.values()), list(si_b.values())
    summary = SplitHalf(
        stat=stat, images_a=images_a, images_b=images_b, units=len(correlation.complete_pairs(a, b)[0]),
        spearman=correlation.spearman(a, b), pearson=correlation.pearson(a, b),
    )
    return Halves(si_a=si_a, si_b=si_b, summary=summary)
