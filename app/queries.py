"""All the server's SQL. SI, in_top/in_bottom and the rankings come from worker.metrics_sql, never from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from app.db import Reader
from app.image_index import category_wnids, image_index
from app.problems import NotFound, Unavailable
from app.params import ScoreParams
from worker import metrics_sql, schema, unit_sql

ScoreRow = tuple[int, float | None, int, int]  # unit, si, in_top, in_bottom


@dataclass(frozen=True)
class Run:
    """A complete run and what the pages need to know about it (memoised per DB generation)."""

    run_id: int
    model: str
    weights: str
    weights_sha256: str
    preprocessing: str
    images_root: str
    n_files: int
    device: str
    dtype: str
    started_at: datetime
    finished_at: datetime | None
    images: int
    skipped: int
    layers: dict[str, tuple[int, int, str]]  # name -> (units, position, module), in depth order
    categories: dict[str, int]  # name -> images in it


@dataclass(frozen=True)
class Scores:
    """One layer's scores for one parameter set."""

    rows: tuple[ScoreRow, ...]
    source: str
    by_unit: dict[int, ScoreRow] = field(default_factory=dict, compare=False)


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def table_names(reader: Reader) -> set[str]:
    return reader.generation.memo("tables", lambda: {r[0] for r in reader.rows(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()")})


def runs(reader: Reader) -> list[Run]:
    """The complete runs, newest first. A run still being written is never shown."""
    return reader.generation.memo("runs", lambda: _read_runs(reader))


def _read_runs(reader: Reader) -> list[Run]:
    tables = table_names(reader)
    run_rows = reader.rows(
        f"""SELECT run_id, model, weights, weights_sha256, preprocessing, images_root, n_files, device,
                   dtype, started_at, finished_at
            FROM {schema.RUNS} WHERE status = $status
            ORDER BY finished_at DESC NULLS LAST, run_id DESC""",
        {"status": schema.RUN_COMPLETE},
    )
    images = dict(reader.rows(f"SELECT run_id, count(*) FROM {schema.IMAGES} GROUP BY run_id"))
    skipped: dict[int, int] = {}
    if schema.SKIPPED in tables:
        skipped = dict(reader.rows(f"SELECT run_id, count(*) FROM {schema.SKIPPED} GROUP BY run_id"))
    layers: dict[int, dict[str, tuple[int, int, str]]] = {}
    for run_id, name, position, units, module in reader.rows(
        f"SELECT run_id, layer, position, units, module FROM {schema.LAYERS_TABLE} ORDER BY run_id, position"
    ):
        layers.setdefault(run_id, {})[name] = (units, position, module)
    names: dict[int, list[str]] = {}
    if schema.CATEGORIES in tables:
        for run_id, category in reader.rows(
            f"SELECT DISTINCT run_id, category FROM {schema.CATEGORIES} ORDER BY run_id, category"
        ):
            names.setdefault(run_id, []).append(category)
    result = []
    for row in run_rows:
        run_id = row[0]
        # The worker stores naive UTC timestamps (started_at, finished_at are the last two).
        row = (*row[:-2], *(_utc(t) for t in row[-2:]))
        categories = {
            name: reader.rows(
                f"SELECT count(*) FILTER (WHERE is_cat) FROM ({metrics_sql.membership_sql()})",
                {"run_id": run_id, "category": name},
            )[0][0]
            for name in names.get(run_id, [])
        }
        result.append(
            Run(*row, images=images.get(run_id, 0), skipped=skipped.get(run_id, 0),
                layers=layers.get(run_id, {}), categories=categories)
        )
    return result


def find_run(reader: Reader, run_id: int | None) -> Run | None:
    """The asked run, or the latest complete one (None when there is none yet)."""
    all_runs = runs(reader)
    if run_id is None:
        return all_runs[0] if all_runs else None
    for run in all_runs:
        if run.run_id == run_id:
            return run
    raise NotFound(f"no complete run {run_id}")


def require_run(reader: Reader, run_id: int | None) -> Run:
    """Like find_run, but NotFound while there is none (for the views that need a run)."""
    run = find_run(reader, run_id)
    if run is None:
        raise NotFound("the database has no complete run yet")
    return run


def require_layer(run: Run, layer: str) -> tuple[int, int, str]:
    """(units, position, module) of a layer of the run, or NotFound listing the valid names."""
    try:
        return run.layers[layer]
    except KeyError:
        raise NotFound(f"unknown layer {layer!r}; run {run.run_id} has {', '.join(run.layers)}") from None


def require_unit(run: Run, layer: str, unit: int) -> int:
    """The units of a layer of the run, or NotFound when the layer or the unit is not in it."""
    units = require_layer(run, layer)[0]
    if unit >= units:
        raise NotFound(f"unit {unit} is not in {layer}, which has units 0 to {units - 1}")
    return units


def require_category(run: Run, category: str) -> int:
    """Images of the run in a category, or NotFound listing the valid names."""
    try:
        return run.categories[category]
    except KeyError:
        known = ", ".join(run.categories) or "none"
        raise NotFound(f"unknown category {category!r}; run {run.run_id} has {known}") from None


def layer_scores(reader: Reader, run: Run, layer: str, params: ScoreParams, k: int) -> Scores:
    """(unit, si, in_top, in_bottom) for each unit, from the worker's precomputed tables when they hold it.

    k is the one in use (params.k, or the default the context chose for the run). SI (per category
    and stat) and the counts (per category, k, pos_stat and neg_stat) are looked up or computed
    separately, each kept in a bounded LRU keyed by the DB generation and its own parameters, so
    changing only si_stat or only k recomputes only the part that depends on it.
    """
    units = require_layer(run, layer)[0]
    require_category(run, params.category)
    base = (reader.generation.identity, run.run_id, layer, params.category)
    si = reader.caches.scores.get_or_compute(
        (*base, "si", params.si_stat), lambda: _layer_si(reader, run, layer, units, params)
    )
    counts = reader.caches.scores.get_or_compute(
        (*base, "counts", k, params.pos_stat, params.neg_stat),
        lambda: _layer_counts(reader, run, layer, units, params, k),
    )
    rows = tuple((unit, si.values[unit], top, bottom) for unit, top, bottom in counts.values)
    source = "precomputed" if si.precomputed and counts.precomputed else "computed"
    return Scores(rows=rows, source=source, by_unit={r[0]: r for r in rows})


@dataclass(frozen=True)
class _Part:
    """One cached half of a layer's scores, and whether the worker had precomputed it."""

    values: Any
    precomputed: bool


def _layer_si(reader: Reader, run: Run, layer: str, units: int, params: ScoreParams) -> _Part:
    q = {"run_id": run.run_id, "layer": layer, "category": params.category}
    rows = reader.rows(
        f"""SELECT unit, si FROM {schema.UNIT_SI}
            WHERE run_id = $run_id AND layer = $layer AND category = $category AND stat = $stat
            ORDER BY unit""",
        {**q, "stat": params.si_stat},
    )
    precomputed = len(rows) == units
    if not precomputed:
        rows = [(u, si) for u, stat, si in reader.rows(metrics_sql.si_sql(), q) if stat == params.si_stat]
    return _Part({int(u): None if si is None else float(si) for u, si in rows}, precomputed)


def _layer_counts(reader: Reader, run: Run, layer: str, units: int, params: ScoreParams, k: int) -> _Part:
    q = {"run_id": run.run_id, "layer": layer, "category": params.category, "k": k}
    rows: list[Any] = []
    if k <= schema.RANKED_K:  # the worker stored each unit's first RANKED_K on both sides
        rows = reader.rows(
            metrics_sql.stored_counts_sql(), {**q, "pos_stat": params.pos_stat, "neg_stat": params.neg_stat}
        )
    precomputed = len(rows) == units
    if not precomputed:
        rows = reader.rows(metrics_sql.counts_sql(params.pos_stat, params.neg_stat), q)
    return _Part(tuple((int(u), int(t), int(b)) for u, t, b in rows), precomputed)


def category_labels(reader: Reader, run: Run, category: str) -> tuple[np.ndarray, np.ndarray]:
    """(image_ids, is_cat) of every image of the run, in image id order: the row order of layer_matrix."""
    cols = reader.arrays(
        f"SELECT image_id, is_cat FROM ({metrics_sql.membership_sql()}) ORDER BY image_id",
        {"run_id": run.run_id, "category": category},
    )
    return cols["image_id"], cols["is_cat"].astype(bool)


def layer_matrix(reader: Reader, run: Run, layer: str, stat: str) -> np.ndarray:
    """Every response of a layer on one stat: (images, units) float32, rows in image id order.

    Memory: 4 bytes x images x units (13 MB for mixed4c at 6,308 images, 590 MB at 286,000).
    """
    units = require_layer(run, layer)[0]
    values = reader.arrays(metrics_sql.layer_matrix_sql(stat), {"run_id": run.run_id, "layer": layer})["v"]
    if values.size != units * run.images:
        raise Unavailable(f"{layer} of run {run.run_id} holds {values.size:,} responses, not units x images")
    return values.astype(np.float32, copy=False).reshape(units, run.images).T  # images x units


def bottom_rows(reader: Reader, run: Run, layer: str, stat: str, k: int, image_ids: np.ndarray) -> np.ndarray:
    """Each unit's first min(k, images) from the bottom of `stat`, as row indices into layer_matrix: (units, k).

    The stored ranks when they cover k (k <= RANKED_K), else the same ranking SQL over the responses.
    """
    units = require_layer(run, layer)[0]
    depth = min(k, run.images)
    q = {"run_id": run.run_id, "layer": layer, "k": k}
    ids = np.empty(0, dtype=np.int64)
    if k <= schema.RANKED_K:
        ids = reader.arrays(metrics_sql.stored_bottom_sql(), {**q, "stat": stat})["image_id"]
    if ids.size != units * depth:
        ids = reader.arrays(
            f"SELECT image_id FROM ({metrics_sql.ranks_sql(stat, 'bottom')}) ORDER BY unit, rank", q
        )["image_id"]
    return np.searchsorted(image_ids, ids).reshape(units, depth)


RankedImage = tuple[int, str, str, bool, float]  # image_id, wnid, class_name, is_cat, value


def rankings(
    reader: Reader, run: Run, layer: str, unit: int, stats: dict[metrics_sql.RankKind, str], category: str, n: int
) -> dict[metrics_sql.RankKind, list[RankedImage]]:
    """A unit's n images of each ranking in `stats` (kind -> stat).

    From unit_rows (one lookup for all of them, the images' classes from the ImageIndex) where it
    holds the first n, else ranked over the unit's responses.
    """
    params = {"run_id": run.run_id, "layer": layer, "unit": unit, "n": n}
    index = image_index(reader, run.run_id)
    members = category_wnids(reader, run.run_id, category)
    found: dict[metrics_sql.RankKind, list[RankedImage]] = {kind: [] for kind in stats}
    for kind, image_id, value in reader.rows(metrics_sql.stored_rows_sql(stats), params):
        wnid = index.wnid(image_id)
        found[kind].append((image_id, wnid, index.class_name(image_id), wnid in members, value))
    for kind, stat in stats.items():
        if len(found[kind]) != min(n, run.images):
            found[kind] = reader.rows(metrics_sql.ranking_sql(kind, stat), {**params, "category": category})
    return found


def image_sizes(reader: Reader, run: Run, image_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(width, height) of each of these images of the run, as decoded by the worker."""
    index = image_index(reader, run.run_id)
    return {image_id: index.size(image_id) for image_id in image_ids if index.has(image_id)}


def unit_maps(
    reader: Reader, run: Run, layer: str, unit: int, image_ids: list[int]
) -> dict[int, tuple[int, int, bytes]]:
    """A unit's stored maps for these images: image id -> (height, width, float16 bytes)."""
    rows = reader.rows(
        f"""SELECT image_id, height, width, values_f16 FROM {schema.UNIT_MAPS}
            WHERE run_id = $run_id AND layer = $layer AND unit = $unit AND list_contains($ids, image_id)""",
        {"run_id": run.run_id, "layer": layer, "unit": unit, "ids": image_ids},
    )
    return {image_id: (height, width, bytes(blob)) for image_id, height, width, blob in rows}


def histogram(reader: Reader, run: Run, layer: str, unit: int, stat: str, category: str) -> unit_sql.Histogram | None:
    """A unit's responses on `stat` in HIST_BINS equal bins over its range, category vs rest; None without any.

    The stored bins when publication wrote them, else binned in SQL so the page carries counts,
    not one value per image.
    """
    q = {"run_id": run.run_id, "layer": layer, "unit": unit, "category": category}
    stored = reader.rows(unit_sql.stored_histogram_sql(), {**q, "stat": stat})
    if stored:
        [(lo, hi, cat, rest)] = stored
        return unit_sql.Histogram(lo=lo, hi=hi, category=list(cat), rest=list(rest))
    return unit_sql.histograms(reader.rows(unit_sql.histogram_sql(stat, one_unit=True), q)).get(unit)


def skipped(reader: Reader, run: Run) -> list[tuple[int, str, str]]:
    """The run's skipped files: (file_id, path, reason)."""
    if schema.SKIPPED not in table_names(reader):
        return []
    return reader.rows(
        f"SELECT file_id, path, reason FROM {schema.SKIPPED} WHERE run_id = $run_id ORDER BY file_id",
        {"run_id": run.run_id},
    )


def image_path(reader: Reader, run: Run, image_id: int) -> str:
    """The stored relative path of an image of the run, or NotFound."""
    rows = reader.rows(
        f"SELECT path FROM {schema.IMAGES} WHERE run_id = $run_id AND image_id = $image_id",
        {"run_id": run.run_id, "image_id": image_id},
    )
    if not rows:
        raise NotFound(f"no image {image_id} in run {run.run_id}")
    return rows[0][0]


def complete_run_count(reader: Reader) -> int:
    """How many complete runs the DB holds (for /healthz)."""
    return len(runs(reader))
