"""The worker's side of unit_maps: which maps a run still needs, and their insertion (codec: unitscope.maps)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np

from unitscope import metrics_sql, schema
from unitscope.maps import SHOWN, encode

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


def maps_todo(con: duckdb.DuckDBPyConnection, run_id: int) -> MapsTodo:
    """The maps a run in the worker's working file still needs: shown (from the staging
    responses) and not yet stored. Empty once the second pass is complete."""
    layers = [r[0] for r in con.execute(
        f"SELECT layer FROM {schema.LAYERS_TABLE} WHERE run_id = $run_id ORDER BY position", {"run_id": run_id}
    ).fetchall()]  # fmt: skip
    stored = set(con.execute(
        f"SELECT layer, unit, image_id FROM {schema.UNIT_MAPS} WHERE run_id = $run_id", {"run_id": run_id}
    ).fetchall())  # fmt: skip
    todo: MapsTodo = {}
    for layer in layers:
        for unit, image_id in sorted(shown_images(con, run_id, layer, schema.STAGING)):
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
