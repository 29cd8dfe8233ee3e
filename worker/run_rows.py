"""The rows of a run in its working file: what a run is (RunSpec, LayerSpec, ImageRow) and their bulk inserts.

`insert_run` stores the run's own rows (runs, layers, units, categories); `insert_batch` one batch's images,
image_stats, staged_rows and skipped rows (its responses are in the staged arrays, worker.staged_arrays). Both
run inside the caller's transaction (worker.store).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np

from unitscope import schema
from unitscope.metrics_sql import network_key
from worker.categories import Category
from worker.db_files import utc_now

FRAME = "_unitscope_frame"  # name a batch of numpy columns is registered under for one INSERT


@dataclass(frozen=True)
class LayerSpec:
    """A layer of the run as stored in `layers` and `units`."""

    name: str
    position: int  # depth order in the model, 0 = its first layer
    units: int
    module: str  # the model's own name for the layer
    branches: tuple[str, ...]  # branch name of every unit, by unit index


@dataclass(frozen=True)
class RunSpec:
    """What a run computes; everything in config_hash must match for a rerun to resume it."""

    model: str
    weights: str
    weights_sha256: str
    preprocessing: str  # canonical JSON
    images_root: str  # absolute
    files: tuple[str, ...]  # relative paths; position = image id / file id
    layers: tuple[LayerSpec, ...]
    categories: tuple[Category, ...]
    device: str
    dtype: str = "float32"
    bases: int = 0  # random orthonormal bases recorded for each of basis_layers (worker.basis); basis b has seed b
    basis_layers: tuple[str, ...] = ()
    network: tuple[str, ...] = ()  # every layer of the model, in depth order (not hashed: the model determines it)

    def config_hash(self) -> str:
        """sha256 over everything that determines the stored values (not the device or batch size)."""
        config = {
            "schema_version": schema.SCHEMA_VERSION,
            "images_root": self.images_root,
            "files": list(self.files),
            "model": self.model,
            "weights_sha256": self.weights_sha256,
            "preprocessing": self.preprocessing,
            "layers": [layer.name for layer in self.layers],
            "categories": {c.name: list(c.wnids) for c in self.categories},
            "dtype": self.dtype,
            "bases": self.bases,
            "basis_layers": list(self.basis_layers),
        }
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ImageRow:
    """One decoded image, as stored in `images`."""

    image_id: int
    path: str
    wnid: str
    class_index: int | None
    class_name: str
    width: int
    height: int
    mode: str


def insert_run(con: duckdb.DuckDBPyConnection, run_id: int, spec: RunSpec, config_hash: str) -> None:
    """Store the run's own rows (runs, layers, units, categories) of a new working file."""
    con.execute(
        f"INSERT INTO {schema.RUNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        [
            run_id, schema.RUN_RUNNING, config_hash, spec.model, spec.weights,
            spec.weights_sha256, spec.preprocessing, spec.images_root, len(spec.files),
            spec.device, spec.dtype, utc_now(),
        ],
    )  # fmt: skip
    layers = {
        "layer": np.array([layer.name for layer in spec.layers], dtype=object),
        "position": np.array([layer.position for layer in spec.layers], dtype=np.int16),
        "units": np.array([layer.units for layer in spec.layers], dtype=np.int16),
        "module": np.array([layer.module for layer in spec.layers], dtype=object),
    }
    sql = f"INSERT INTO {schema.LAYERS_TABLE} SELECT $run_id, layer, position, units, module FROM {FRAME}"
    insert_frame(con, sql, layers, {"run_id": run_id})
    if spec.network:
        con.execute(f"INSERT INTO {schema.META} VALUES ($key, $value)",
                    {"key": network_key(run_id), "value": ",".join(spec.network)})
    units = {
        "layer": np.array([layer.name for layer in spec.layers for _ in layer.branches], dtype=object),
        "unit": np.concatenate([np.arange(layer.units, dtype=np.int16) for layer in spec.layers]),
        "branch": np.array([b for layer in spec.layers for b in layer.branches], dtype=object),
    }
    insert_frame(
        con,
        f"INSERT INTO {schema.UNITS} SELECT $run_id, layer, unit, branch FROM {FRAME}",
        units,
        {"run_id": run_id},
    )
    if spec.bases and spec.basis_layers:
        bases = {
            "layer": np.array([layer for layer in spec.basis_layers for _ in range(spec.bases)], dtype=object),
            "basis": np.tile(np.arange(spec.bases, dtype=np.int16), len(spec.basis_layers)),
        }
        insert_frame(con, f"INSERT INTO {schema.BASES} SELECT $run_id, layer, basis, basis FROM {FRAME}", bases,
                {"run_id": run_id})
    members = {
        "category": np.array([c.name for c in spec.categories for _ in c.wnids], dtype=object),
        "wnid": np.array([w for c in spec.categories for w in c.wnids], dtype=object),
    }
    insert_frame(
        con,
        f"INSERT INTO {schema.CATEGORIES} SELECT $run_id, category, wnid FROM {FRAME}",
        members,
        {"run_id": run_id},
    )


def run_layers(con: duckdb.DuckDBPyConnection, run_id: int) -> list[tuple[str, int]]:
    """The layers of a stored run with their units, in depth order."""
    return con.execute(f"SELECT layer, units FROM {schema.LAYERS_TABLE} WHERE run_id = $run_id ORDER BY position",
                       {"run_id": run_id}).fetchall()


def run_categories(con: duckdb.DuckDBPyConnection, run_id: int) -> list[str]:
    """The categories of a stored run, by name."""
    return [r[0] for r in con.execute(
        f"SELECT DISTINCT category FROM {schema.CATEGORIES} WHERE run_id = $run_id ORDER BY 1", {"run_id": run_id}
    ).fetchall()]


def insert_batch(
    con: duckdb.DuckDBPyConnection,
    run_id: int,
    images: Sequence[ImageRow],
    skipped: Sequence[tuple[int, str, str]],
    staged: tuple[str, int],
    image_stats: np.ndarray | None = None,
) -> None:
    """Store one batch's rows: its images, skipped files (file id, path, reason), where its responses sit in the
    staged arrays (staged: the part and the row of its first image, worker.staged_arrays) and, when given, the
    images' low-level statistics (float32 [len(images), 5] in schema.IMAGE_STAT_COLUMNS order)."""
    if images:
        rows = {
            "image_id": np.array([r.image_id for r in images], dtype=np.int32),
            "path": np.array([r.path for r in images], dtype=object),
            "wnid": np.array([r.wnid for r in images], dtype=object),
            "class_index": np.array([r.class_index for r in images], dtype=object),
            "class_name": np.array([r.class_name for r in images], dtype=object),
            "width": np.array([r.width for r in images], dtype=np.int32),
            "height": np.array([r.height for r in images], dtype=np.int32),
            "mode": np.array([r.mode for r in images], dtype=object),
        }
        insert_frame(
            con,
            f"INSERT INTO {schema.IMAGES} SELECT $run_id, image_id, path, wnid, class_index, "
            f"class_name, width, height, mode FROM {FRAME}",
            rows,
            {"run_id": run_id},
        )
        ids = rows["image_id"]
        if image_stats is not None:
            _insert_image_stats(con, run_id, ids, image_stats)
        part, first_row = staged
        insert_frame(con, f"INSERT INTO {schema.STAGED_ROWS} SELECT image_id, $part, row FROM {FRAME}",
                {"image_id": ids, "row": np.arange(first_row, first_row + len(ids), dtype=np.int32)}, {"part": part})
    if skipped:
        bad = {
            "file_id": np.array([s[0] for s in skipped], dtype=np.int32),
            "path": np.array([s[1] for s in skipped], dtype=object),
            "reason": np.array([s[2] for s in skipped], dtype=object),
        }
        insert_frame(
            con,
            f"INSERT INTO {schema.SKIPPED} SELECT $run_id, file_id, path, reason FROM {FRAME}",
            bad,
            {"run_id": run_id},
        )


def _insert_image_stats(con: duckdb.DuckDBPyConnection, run_id: int, ids: np.ndarray, stats: np.ndarray) -> None:
    """Insert one batch's rows of image_stats: `stats[i]` belongs to image `ids[i]`."""
    columns = schema.IMAGE_STAT_COLUMNS
    if stats.shape != (len(ids), len(columns)):
        raise ValueError(f"image_stats: shape {stats.shape} for {len(ids)} images and {len(columns)} statistics")
    values = np.ascontiguousarray(stats, dtype=np.float32)
    frame = {"image_id": ids, **{name: values[:, i] for i, name in enumerate(columns)}}
    insert_frame(
        con,
        f"INSERT INTO {schema.IMAGE_STATS} SELECT $run_id, image_id, {', '.join(columns)} FROM {FRAME}",
        frame,
        {"run_id": run_id},
    )


def or_null(column: str) -> str:
    """SQL for a float column of a FRAME, NaN as NULL (the tables' undefined)."""
    return f"CASE WHEN isnan({column}) THEN NULL ELSE {column} END"


def insert_frame(
    con: duckdb.DuckDBPyConnection, sql: str, frame: Mapping[str, np.ndarray], params: Mapping[str, object]
) -> None:
    """Run `sql`, which reads the numpy columns `frame` as the relation FRAME, in one bulk insert."""
    con.register(FRAME, dict(frame))
    try:
        con.execute(sql, dict(params))
    finally:
        con.unregister(FRAME)
