"""Publication's stored layer controls (worker.derived_layer): looked up when a request's parameters are
the stored ones; None otherwise (no such rows, or a DB published before them), and the caller computes.
"""

from __future__ import annotations

import numpy as np

from app import queries
from app.db import Reader
from worker import schema

UnitColumn = str  # a column of unit_controls: auroc, tail_below, tail_above, si_half_a, si_half_b
_UNIT_COLUMNS = ("auroc", "tail_below", "tail_above", "si_half_a", "si_half_b")


def unit_column(reader: Reader, run: queries.Run, layer: str, category: str, stat: str,
                column: UnitColumn) -> np.ndarray | None:
    """One stored column for every unit of the layer, in unit order, NaN where undefined; None if not stored."""
    if column not in _UNIT_COLUMNS:
        raise ValueError(f"unknown unit_controls column {column!r}")  # it is spliced into SQL
    if schema.UNIT_CONTROLS not in queries.table_names(reader):
        return None
    units = queries.require_layer(run, layer)[0]
    values = reader.arrays(
        # NaN, the statistics' own "undefined", for NULL: a plain float array, not a masked one.
        f"""SELECT coalesce({column}, 'NaN'::DOUBLE) AS v FROM {schema.UNIT_CONTROLS}
            WHERE run_id = $run_id AND layer = $layer AND category = $category AND stat = $stat ORDER BY unit""",
        {"run_id": run.run_id, "layer": layer, "category": category, "stat": stat},
    )["v"]
    if values.size != units:
        return None
    return values.astype(np.float64, copy=False)


NullRow = tuple[str, float | None, float | None, float | None, float | None, int]


def null_rows(reader: Reader, run: queries.Run, layer: str, *, category: str, si_stat: str, neg_stat: str,
              k: int, threshold: float, permutations: int, seed: int) -> dict[str, NullRow] | None:
    """The stored null's (statistic, observed, null_mean, null_p95, p, valid) by statistic; None if not stored."""
    if schema.LAYER_NULL not in queries.table_names(reader):
        return None
    rows = reader.rows(
        f"""SELECT statistic, observed, null_mean, null_p95, p, valid FROM {schema.LAYER_NULL}
            WHERE run_id = $run_id AND layer = $layer AND category = $category AND si_stat = $si_stat
              AND neg_stat = $neg_stat AND k = $k AND threshold = $threshold
              AND permutations = $permutations AND seed = $seed""",
        {"run_id": run.run_id, "layer": layer, "category": category, "si_stat": si_stat, "neg_stat": neg_stat,
         "k": k, "threshold": threshold, "permutations": permutations, "seed": seed},
    )
    return {r[0]: r for r in rows} or None
