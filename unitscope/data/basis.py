"""The SI of a layer's random-basis directions (the random-basis control): stored by publication, else computed
with the same function (directions_si, which publication's worker.derived_basis calls for every category)."""

from __future__ import annotations

import numpy as np

from unitscope import schema, stats
from unitscope.data.runs import Run, require_category, require_layer, table_names
from unitscope.data.scores import category_labels, layer_chunks, whole_layer
from unitscope.data.source import Source, stored_or_computed


def bases(source: Source, run: Run, layer: str) -> list[int]:
    """The random bases the run recorded for the layer; empty for a run without (or a DB before them)."""
    if schema.BASES not in table_names(source):
        return []
    return source.cached((run.run_id, layer, "bases"), lambda: [int(r[0]) for r in source.rows(
        f"SELECT basis FROM {schema.BASES} WHERE run_id = $run_id AND layer = $layer ORDER BY basis",
        {"run_id": run.run_id, "layer": layer})], keep=True)


def basis_si(source: Source, run: Run, layer: str, category: str, stat: str) -> np.ndarray | None:
    """(bases, units) SI of every direction on `stat` for the category, NaN where undefined; None without bases."""
    units = require_layer(run, layer)[0]
    require_category(run, category)
    schema.stat_column(stat)
    found = bases(source, run, layer)
    if not found:
        return None
    q = {"run_id": run.run_id, "layer": layer, "category": category}

    def stored() -> np.ndarray | None:
        values = source.arrays(
            f"""SELECT coalesce(si, 'NaN'::DOUBLE) AS si FROM {schema.BASIS_SI}
                WHERE run_id = $run_id AND layer = $layer AND category = $category AND stat = $stat
                ORDER BY basis, unit""", {**q, "stat": stat})["si"]
        return values.reshape(len(found), units) if values.size == len(found) * units else None

    def compute() -> np.ndarray:
        labels = category_labels(source, run, category)[1]
        return np.array([directions_si(source, run, layer, stat, b, [labels])[0] for b in found])

    return source.cached((run.run_id, layer, category, stat, "basis_si"),
                         lambda: stored_or_computed(stored, lambda: whole_layer(source, run, layer, compute))[0])


def directions_si(source: Source, run: Run, layer: str, stat: str, basis: int, masks: list[np.ndarray]) -> np.ndarray:
    """(label sets, units) SI of random basis `basis`'s directions on `stat`: stats.si_by_category over its columns, a
    chunk at a time."""
    return np.concatenate([stats.si_by_category(values, masks)
                           for _, values in layer_chunks(source, run, layer, stat, basis)], axis=1)
