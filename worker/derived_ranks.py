"""Publication's SI and ranks, from one read of each stat of a layer, a chunk of units at a time.

- unit_si: stats.si_by_category for every category of the run (each unit's min, max and total once for all of
  them), the function the server calls for a layer without the stored rows. The DuckDB query it replaces scanned the
  layer once per category: 10.9 s for six categories at 100,000 images x 1,024 units, and 13.0 s as one scan with 36
  filtered averages;
- unit_ranks: each unit's first ranked_k images from both sides of every stat, in the order of metrics_sql.ranks_sql
  (top: largest first; bottom: smallest first; ties by image id), found by unitscope.unit_summary.first_rows. The
  server runs ranks_sql for a k past the stored depth.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np

from unitscope import schema, stats, unit_summary
from unitscope.data.images import image_index
from unitscope.data.runs import require_run
from unitscope.data.scores import category_labels, layer_chunks
from unitscope.data.source import ConnectionSource
from worker.blocks import in_blocks
from worker.run_rows import FRAME, insert_frame, or_null


def write_ranks(con: duckdb.DuckDBPyConnection, run_id: int, layer: str, ranked_k: int,
                si_categories: Sequence[str] = ()) -> None:
    """Store each unit's first `ranked_k` images of `layer` from both sides of every stat in unit_ranks, and its SI
    for each of si_categories (publication's are the run's) in unit_si."""
    source = ConnectionSource(con, database=None)
    run = require_run(source, run_id)
    image_ids = np.flatnonzero(image_index(source, run_id).code >= 0)  # the rows of layer_chunks
    masks = [category_labels(source, run, category)[1] for category in si_categories]

    def block(_: int, values: np.ndarray) -> dict[str, np.ndarray]:
        found = {side: unit_summary.first_rows(values, ranked_k, side) for side in schema.SIDES}
        return {**found, "si": stats.si_by_category(values, masks)} if masks else found

    for stat in schema.STATS:
        blocks = [found for first, values in layer_chunks(source, run, layer, stat)
                  for found in in_blocks(block, first, values)]
        if masks:
            insert_si(con, schema.UNIT_SI, "$run_id, $layer", {"run_id": run_id, "layer": layer, "stat": stat},
                      si_categories, np.concatenate([found["si"] for found in blocks], axis=1))
        for side in schema.SIDES:
            rows = np.concatenate([found[side] for found in blocks])
            units, depth = rows.shape
            insert_frame(
                con,
                f"INSERT INTO {schema.UNIT_RANKS} SELECT $run_id, $layer, $stat, $side, unit, rank, image_id "
                f"FROM {FRAME}",
                {"unit": np.repeat(np.arange(units, dtype=np.int16), depth),
                 "rank": np.tile(np.arange(1, depth + 1, dtype=np.int16), units),
                 "image_id": image_ids[rows.ravel()].astype(np.int32)},
                {"run_id": run_id, "layer": layer, "stat": stat, "side": side},
            )


def insert_si(con: duckdb.DuckDBPyConnection, table: str, keys: str, params: dict[str, object],
              categories: Sequence[str], si: np.ndarray) -> None:
    """Insert each category's row of si (categories, units) into unit_si or basis_si: `keys` (SQL over `params`,
    which hold $stat) first, then $category, $stat, unit, si; NaN as NULL, the tables' undefined."""
    for category, row in zip(categories, si):
        insert_frame(
            con, f"INSERT INTO {table} SELECT {keys}, $category, $stat, unit, "
            f"{or_null('si')} FROM {FRAME}",
            {"unit": np.arange(row.size, dtype=np.int32), "si": row}, {**params, "category": category},
        )
