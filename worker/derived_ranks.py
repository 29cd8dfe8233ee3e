"""Publication's ranks: each unit's first ranked_k images of a layer from both sides of every stat (unit_ranks).

The order of metrics_sql.ranks_sql (top: largest first; bottom: smallest first; ties by image id), found in numpy
a chunk of units at a time (unitscope.unit_summary.first_rows): one read of each stat for both sides, where the SQL
scanned the layer twice per stat and side. The server runs ranks_sql for a k past the stored depth.
"""

from __future__ import annotations

import duckdb
import numpy as np

from unitscope import schema, unit_summary
from unitscope.data.images import image_index
from unitscope.data.runs import require_run
from unitscope.data.scores import layer_chunks
from unitscope.data.source import ConnectionSource
from worker.blocks import in_blocks
from worker.run_rows import FRAME, insert_frame


def write_ranks(con: duckdb.DuckDBPyConnection, run_id: int, layer: str, ranked_k: int) -> None:
    """Store each unit's first `ranked_k` images of `layer` from both sides of every stat in unit_ranks."""
    source = ConnectionSource(con, database=None)
    run = require_run(source, run_id)
    image_ids = np.flatnonzero(image_index(source, run_id).code >= 0)  # the rows of layer_chunks
    for stat in schema.STATS:
        blocks = [found for first, values in layer_chunks(source, run, layer, stat)
                  for found in in_blocks(lambda _, block: {side: unit_summary.first_rows(block, ranked_k, side)
                                                           for side in schema.SIDES}, first, values)]
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
