"""The worker's side of unit_maps: which maps a run still needs, and their insertion (codec: unitscope.maps)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np

from unitscope import metrics_sql, schema
from unitscope.maps import SHOWN, encode
from worker.run_rows import run_layers
from worker.staged_arrays import StagedArrays, narrow, staged_index

MapsTodo = dict[int, dict[str, list[int]]]  # image id -> layer -> units whose map is still needed


@dataclass(frozen=True)
class MapRow:
    """One unit's pre-ReLU map for one image."""

    layer: str
    unit: int
    image_id: int
    values: np.ndarray  # height x width, float32


def shown_images(
    con: duckdb.DuckDBPyConnection, run_id: int, layer: str, table: str = schema.RESPONSES
) -> set[tuple[int, int]]:
    """(unit, image_id) of every map a layer's unit pages show by default, from `table`'s responses."""
    shown: set[tuple[int, int]] = set()
    for kind, stat in SHOWN:
        rows = con.execute(
            metrics_sql.shown_sql(kind, stat, table), {"run_id": run_id, "layer": layer, "n": schema.MAP_N}
        ).fetchall()
        shown.update((unit, image_id) for unit, image_id, _ in rows)
    return shown


def maps_todo(con: duckdb.DuckDBPyConnection, run_id: int, staged: StagedArrays) -> MapsTodo:
    """The maps a run in the worker's working file still needs: shown (from its staged responses, one layer at
    a time as the view schema.STAGING) and not yet stored. Empty once the second pass is complete."""
    index = staged_index(con)
    stored = set(con.execute(
        f"SELECT layer, unit, image_id FROM {schema.UNIT_MAPS} WHERE run_id = $run_id", {"run_id": run_id}
    ).fetchall())  # fmt: skip
    todo: MapsTodo = {}
    for layer, units in run_layers(con, run_id):
        con.register("_unitscope_staged", narrow(index.ids, staged.read(layer, units, index)))
        try:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {schema.STAGING} AS SELECT {int(run_id)} AS run_id, "
                        f"'{layer.replace(chr(39), chr(39) * 2)}' AS layer, * FROM _unitscope_staged")
            shown = shown_images(con, run_id, layer, schema.STAGING)
        finally:
            con.execute(f"DROP VIEW IF EXISTS {schema.STAGING}")
            con.unregister("_unitscope_staged")
        for unit, image_id in sorted(shown):
            if (layer, unit, image_id) not in stored:
                todo.setdefault(image_id, {}).setdefault(layer, []).append(unit)
    return todo


def insert_maps(con: duckdb.DuckDBPyConnection, run_id: int, rows: Sequence[MapRow]) -> None:
    """Append maps to unit_maps (the caller holds the transaction)."""
    if not rows:
        return
    frame = {
        "layer": np.array([r.layer for r in rows], dtype=object),
        "unit": np.array([r.unit for r in rows], dtype=np.int16),
        "image_id": np.array([r.image_id for r in rows], dtype=np.int32),
        "height": np.array([r.values.shape[0] for r in rows], dtype=np.int16),
        "width": np.array([r.values.shape[1] for r in rows], dtype=np.int16),
        "values_f16": np.array([encode(r.values) for r in rows], dtype=object),
    }
    name = "_unitscope_maps"
    con.register(name, frame)
    try:
        con.execute(
            f"INSERT INTO {schema.UNIT_MAPS} SELECT $run_id, layer, unit, image_id, height, width, values_f16 "
            f"FROM {name}",
            {"run_id": run_id},
        )
    finally:
        con.unregister(name)
