"""A DB's complete runs, and the checks that a layer, unit or category belongs to one."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from datetime import datetime, timezone

from unitscope import claim_rules, metrics_sql, schema
from unitscope.data.source import Source
from unitscope.errors import NotFound


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
    in_order: bool = False  # its responses are stored in (layer, unit, image_id) order (metrics_sql.IN_ORDER_KEY)
    network: tuple[str, ...] | None = None  # every layer of its model in depth order; None before it was recorded

    def default_layer(self) -> tuple[str, str]:
        """The claims' layer of this run (claim_rules.default_layer, at the network's depth when known), and why."""
        return claim_rules.default_layer(list(self.layers), self.network)

    def depth(self, layer: str) -> float:
        """The layer's relative depth in the run's network; among the recorded layers for a run published before the
        worker stored its network."""
        return claim_rules.relative_depth(layer, self.network if self.network is not None else list(self.layers))


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def table_names(source: Source) -> set[str]:
    """The DB's table names (an older DB lacks the later ones)."""
    return source.cached("tables", lambda: {r[0] for r in source.rows(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()")}, keep=True)


def runs(source: Source) -> list[Run]:
    """The complete runs, newest first. A run still being written is never shown."""
    return source.cached("runs", lambda: _read_runs(source), keep=True)


def _read_runs(source: Source) -> list[Run]:
    tables = table_names(source)
    run_rows = source.rows(
        f"""SELECT run_id, model, weights, weights_sha256, preprocessing, images_root, n_files, device,
                   dtype, started_at, finished_at
            FROM {schema.RUNS} WHERE status = $status
            ORDER BY finished_at DESC NULLS LAST, run_id DESC""",
        {"status": schema.RUN_COMPLETE},
    )
    images = dict(source.rows(f"SELECT run_id, count(*) FROM {schema.IMAGES} GROUP BY run_id"))
    skipped: dict[int, int] = {}
    if schema.SKIPPED in tables:
        skipped = dict(source.rows(f"SELECT run_id, count(*) FROM {schema.SKIPPED} GROUP BY run_id"))
    layers: dict[int, dict[str, tuple[int, int, str]]] = {}
    for run_id, name, position, units, module in source.rows(
        f"SELECT run_id, layer, position, units, module FROM {schema.LAYERS_TABLE} ORDER BY run_id, position"
    ):
        layers.setdefault(run_id, {})[name] = (units, position, module)
    names: dict[int, list[str]] = {}
    if schema.CATEGORIES in tables:
        for run_id, category in source.rows(
            f"SELECT DISTINCT run_id, category FROM {schema.CATEGORIES} ORDER BY run_id, category"
        ):
            names.setdefault(run_id, []).append(category)
    in_order = {key.removeprefix(metrics_sql.IN_ORDER_KEY) for (key,) in source.rows(
        f"SELECT key FROM {schema.META} WHERE starts_with(key, $prefix)", {"prefix": metrics_sql.IN_ORDER_KEY})}
    networks = {key.removeprefix(metrics_sql.NETWORK_KEY): tuple(value.split(",")) for key, value in source.rows(
        f"SELECT key, value FROM {schema.META} WHERE starts_with(key, $prefix)", {"prefix": metrics_sql.NETWORK_KEY})}
    result = []
    for row in run_rows:
        run_id = row[0]
        # The worker stores naive UTC timestamps (started_at, finished_at are the last two).
        row = (*row[:-2], *(_utc(t) for t in row[-2:]))
        categories = {
            name: source.rows(
                f"SELECT count(*) FILTER (WHERE is_cat) FROM ({metrics_sql.membership_sql()})",
                {"run_id": run_id, "category": name},
            )[0][0]
            for name in names.get(run_id, [])
        }
        result.append(
            Run(*row, images=images.get(run_id, 0), skipped=skipped.get(run_id, 0),
                layers=layers.get(run_id, {}), categories=categories, in_order=str(run_id) in in_order,
                network=networks.get(str(run_id)))
        )
    return result


def find_run(source: Source, run_id: int | None) -> Run | None:
    """The asked run, or the latest complete one (None when there is none yet)."""
    all_runs = runs(source)
    if run_id is None:
        return all_runs[0] if all_runs else None
    for run in all_runs:
        if run.run_id == run_id:
            return run
    raise NotFound(f"no complete run {run_id}")


def require_run(source: Source, run_id: int | None) -> Run:
    """Like find_run, but NotFound while there is none (for the views that need a run)."""
    run = find_run(source, run_id)
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
    """The units of a layer of the run, or NotFound when the layer or the unit is not in it.

    TypeError for a unit that is not a whole number: a bool or 3.0 names no unit, and a negative one is no index
    from the end.
    """
    units = require_layer(run, layer)[0]
    if isinstance(unit, bool) or not isinstance(unit, numbers.Integral):
        raise TypeError(f"a unit is a whole number (0 to {units - 1} in {layer}), got {unit!r}")
    if not 0 <= unit < units:
        raise NotFound(f"unit {unit} is not in {layer}, which has units 0 to {units - 1}")
    return units


def require_category(run: Run, category: str) -> int:
    """Images of the run in a category, or NotFound listing the valid names."""
    try:
        return run.categories[category]
    except KeyError:
        known = ", ".join(run.categories) or "none"
        raise NotFound(f"unknown category {category!r}; run {run.run_id} has {known}") from None


