"""Publication's SI of every direction of a layer's random bases (basis_si), for the axis_aligned claim."""

from __future__ import annotations

import duckdb

from unitscope import schema
from unitscope.metrics_sql import basis_si_sql
from worker.run_rows import run_categories


def write_basis_si(con: duckdb.DuckDBPyConnection, run_id: int, layer: str) -> None:
    """Store basis_si for every basis of one published layer of run_id, every category and stat."""
    q = {"run_id": run_id, "layer": layer}
    bases = [r[0] for r in con.execute(
        f"SELECT basis FROM {schema.BASES} WHERE run_id = $run_id AND layer = $layer ORDER BY basis", q).fetchall()]
    categories = run_categories(con, run_id)
    for basis in bases:
        for category in categories:
            con.execute(
                f"INSERT INTO {schema.BASIS_SI} SELECT $run_id, $layer, $basis, $category, stat, unit, si "
                f"FROM ({basis_si_sql()})",
                {**q, "basis": basis, "category": category},
            )
