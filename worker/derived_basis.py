"""Publication's SI of every direction of a layer's random bases (basis_si), for the axis_aligned claim: stats'
si_by_category over each basis's columns, a chunk at a time, every category of the run from one read of each stat
(the server computes stats.si the same way for a DB without the stored rows)."""

from __future__ import annotations

import duckdb
import numpy as np

from unitscope import schema, stats
from unitscope.data.runs import require_run
from unitscope.data.scores import category_labels, layer_chunks
from unitscope.data.source import ConnectionSource
from worker.derived_ranks import insert_si


def write_basis_si(con: duckdb.DuckDBPyConnection, run_id: int, layer: str) -> None:
    """Store basis_si for every basis of one published layer of run_id, every category and stat."""
    q = {"run_id": run_id, "layer": layer}
    bases = [r[0] for r in con.execute(
        f"SELECT basis FROM {schema.BASES} WHERE run_id = $run_id AND layer = $layer ORDER BY basis", q).fetchall()]
    source = ConnectionSource(con, database=None)
    run = require_run(source, run_id)
    categories = sorted(run.categories)
    masks = [category_labels(source, run, category)[1] for category in categories]
    for basis in bases:
        for stat in schema.STATS:
            insert_si(con, schema.BASIS_SI, "$run_id, $layer, $basis", {**q, "basis": basis, "stat": stat}, categories,
                      np.concatenate([stats.si_by_category(values, masks)
                                      for _, values in layer_chunks(source, run, layer, stat, basis)], axis=1))
