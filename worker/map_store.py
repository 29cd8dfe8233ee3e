"""The worker's side of unit_maps: which maps a run still needs, and their insertion (codec: unitscope.maps)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np

from unitscope import schema
from unitscope.maps import SHOWN, encode
from unitscope.unit_summary import first_rows
from worker.run_rows import FRAME, insert_frame, run_layers
from worker.staged_arrays import VALUES, StagedArrays, staged_index

MapsTodo = dict[int, dict[str, list[int]]]  # image id -> layer -> units whose map is still needed


@dataclass(frozen=True)
class Maps:
    """Pre-ReLU maps of one layer: values[i] is unit units[i]'s map for image image_ids[i]."""

    layer: str
    units: np.ndarray  # (m,) integers
    image_ids: np.ndarray  # (m,) integers
    values: np.ndarray  # (m, height, width) floats, stored as float16 (unitscope.maps.encode)


# unit_summary.first_rows' name of each ranking a unit page shows.
_RANKING: dict[str, str] = {"positive": "top", "negative": "bottom", "near_zero": "near_zero"}
_CHUNK_BYTES = 512 * 2**20  # the staged responses of one chunk of a layer's units


def shown_images(values: np.ndarray, image_ids: np.ndarray, first_unit: int = 0) -> set[tuple[int, int]]:
    """(unit, image_id) of every map the unit pages show by default (SHOWN: each ranking's first MAP_N, in
    metrics_sql.ranking_sql's order, ties by image id), from a chunk of units' responses: values [images in
    image_ids order (ascending), units first_unit.., 3 stats in schema.STATS order]."""
    shown: set[tuple[int, int]] = set()
    for kind, stat in SHOWN:
        rows = first_rows(values[:, :, schema.STATS.index(stat)], schema.MAP_N, _RANKING[kind])
        units = np.repeat(np.arange(first_unit, first_unit + rows.shape[0]), rows.shape[1])
        shown.update(zip(units.tolist(), image_ids[rows.ravel()].tolist()))
    return shown


def maps_todo(con: duckdb.DuckDBPyConnection, run_id: int, staged: StagedArrays) -> MapsTodo:
    """The maps a run in the worker's working file still needs: shown (from its staged responses, a chunk of a
    layer's units at a time, so that memory holds a chunk at any number of images) and not yet stored. Empty once
    the second pass is complete."""
    index = staged_index(con)
    stored = set(con.execute(
        f"SELECT layer, unit, image_id FROM {schema.UNIT_MAPS} WHERE run_id = $run_id", {"run_id": run_id}
    ).fetchall())  # fmt: skip
    todo: MapsTodo = {}
    step = max(1, _CHUNK_BYTES // max(1, len(index.ids) * VALUES * 4))
    for layer, units in run_layers(con, run_id):
        for first, values in staged.chunks(layer, units, index, step):
            for unit, image_id in sorted(shown_images(values, index.ids, first)):
                if (layer, unit, image_id) not in stored:
                    todo.setdefault(image_id, {}).setdefault(layer, []).append(unit)
    return todo


def insert_maps(con: duckdb.DuckDBPyConnection, run_id: int, maps: Sequence[Maps]) -> None:
    """Append maps to unit_maps, one INSERT for all of them (the caller holds the transaction)."""
    maps = [m for m in maps if len(m.units)]
    if not maps:
        return
    counts = [len(m.units) for m in maps]
    frame = {
        "layer": np.repeat(np.array([m.layer for m in maps], dtype=object), counts),
        "unit": np.concatenate([m.units for m in maps]).astype(np.int16),
        "image_id": np.concatenate([m.image_ids for m in maps]).astype(np.int32),
        "height": np.repeat([m.values.shape[1] for m in maps], counts).astype(np.int16),
        "width": np.repeat([m.values.shape[2] for m in maps], counts).astype(np.int16),
        "values_f16": np.array([blob for m in maps for blob in encode(m.values)], dtype=object),
    }
    insert_frame(con, f"INSERT INTO {schema.UNIT_MAPS} SELECT $run_id, layer, unit, image_id, height, width, "
                      f"values_f16 FROM {FRAME}", frame, {"run_id": run_id})
