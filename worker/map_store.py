"""unit_maps: which pre-ReLU maps a run keeps, and how they are stored.

Torch-free (numpy and duckdb), so the server decodes maps with the same code. A map is stored as
its height x width values in little-endian float16, row-major: about 3 significant digits, fine for
display (the study's numbers stay in `responses`, float32).

Which maps: for every unit of every layer of a run, its first MAP_N images of each ranking that a
unit page shows by default (positive by max, near zero by |mean|, negative by min), in the order
of metrics_sql.ranking_sql, ties by image id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import duckdb
import numpy as np

from worker import metrics_sql, schema

MAP_DTYPE: Final = np.dtype("<f2")  # little-endian float16

# The rankings a unit page shows by default, and the stat each ranks by.
SHOWN: Final[tuple[tuple[metrics_sql.RankKind, str], ...]] = (
    ("positive", schema.DEFAULT_POS_STAT),
    ("near_zero", schema.DEFAULT_NEAR_STAT),
    ("negative", schema.DEFAULT_NEG_STAT),
)

MapsTodo = dict[int, dict[str, list[int]]]  # image id -> layer -> units whose map is still needed


@dataclass(frozen=True)
class MapRow:
    """One unit's pre-ReLU map for one image."""

    layer: str
    unit: int
    image_id: int
    values: np.ndarray  # height x width, float32


def encode(values: np.ndarray) -> bytes:
    """A 2-D map -> its float16 little-endian row-major bytes."""
    if values.ndim != 2:
        raise ValueError(f"a map is 2-D, got shape {values.shape}")
    return np.ascontiguousarray(values, dtype=MAP_DTYPE).tobytes()


def decode(blob: bytes, height: int, width: int) -> np.ndarray:
    """Stored bytes -> the height x width map as float32."""
    return np.frombuffer(blob, dtype=MAP_DTYPE).reshape(height, width).astype(np.float32)


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
