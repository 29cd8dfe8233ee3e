"""Publication's SI of every direction of a layer's random bases (basis_si), for the axis_aligned claim: every
category of the run from one read of each stat (unitscope.data.basis.directions_si, which the server calls for a DB
without the stored rows)."""

from __future__ import annotations

import duckdb

from unitscope import schema
from unitscope.data.basis import bases, directions_si
from unitscope.data.runs import require_run
from unitscope.data.scores import category_labels
from unitscope.data.source import ConnectionSource
from worker.derived_ranks import insert_si


def write_basis_si(con: duckdb.DuckDBPyConnection, run_id: int, layer: str) -> None:
    """Store basis_si for every basis of one published layer of run_id, every category and stat."""
    q = {"run_id": run_id, "layer": layer}
    source = ConnectionSource(con, database=None)
    run = require_run(source, run_id)
    categories = sorted(run.categories)
    masks = [category_labels(source, run, category)[1] for category in categories]
    for basis in bases(source, run, layer):
        for stat in schema.STATS:
            insert_si(con, schema.BASIS_SI, "$run_id, $layer, $basis", {**q, "basis": basis, "stat": stat}, categories,
                      directions_si(source, run, layer, stat, basis, masks))
