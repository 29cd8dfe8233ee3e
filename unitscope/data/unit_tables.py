"""A layer's stored unit-page tables (unit_rows, unit_histograms, unit_classes), read in one query per layer and kept
as numpy columns grouped by unit, so that a unit page slices its rows instead of looking them up.

Why: a lookup of one unit's rows cost 0.9-2.1 ms of DuckDB (a plan, two row groups decompressed) whatever the number
of images, three of them on every cold unit page; a whole layer's rows take one query of 30-70 ms (40,000 images,
512 units), and memory per layer that does not grow with the images: unit_rows' UNIT_ROW_MAX images a kind and stat
(12 bytes each), unit_classes' classes (22 bytes each, about 22 MB a stat for 1,024 units of 1,000 classes), a
histogram's bins. docs/performance.md has the measurements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from unitscope import metrics_sql, schema, unit_summary
from unitscope.data.images import image_index
from unitscope.data.runs import Run, require_layer
from unitscope.data.source import Source


@dataclass(frozen=True)
class ByUnit:
    """A query's columns in unit order, and where each unit's rows start: unit u's rows are starts[u]:starts[u + 1]."""

    columns: Mapping[str, np.ndarray]
    starts: np.ndarray  # (units + 1,)

    @classmethod
    def of(cls, columns: Mapping[str, np.ndarray], units: int) -> ByUnit:
        """columns: a query's result ordered by its `unit` column (dropped here), for a layer of `units` units."""
        unit = np.asarray(columns["unit"])
        if unit.size and (np.diff(unit) < 0).any():
            raise ValueError("rows must come in unit order")
        return cls(columns={name: np.asarray(col) for name, col in columns.items() if name != "unit"},
                   starts=np.searchsorted(unit, np.arange(units + 1)))

    def unit(self, unit: int) -> dict[str, np.ndarray]:
        """The unit's rows, in the query's order (none for a unit outside the layer)."""
        rows = slice(self.starts[unit], self.starts[unit + 1]) if 0 <= unit < len(self.starts) - 1 else slice(0, 0)
        return {name: col[rows] for name, col in self.columns.items()}


def _layer(source: Source, run: Run, layer: str, key: tuple[object, ...], sql: str,
           params: Mapping[str, object]) -> ByUnit:
    units = require_layer(run, layer)[0]
    return source.cached((run.run_id, layer, "unit_tables", *key), lambda: ByUnit.of(source.arrays(
        sql, {"run_id": run.run_id, "layer": layer, **params}), units))


def unit_rows(source: Source, run: Run, layer: str) -> ByUnit:
    """Every unit's stored rows (unit_rows) of every kind and stat: kind and stat as indices into metrics_sql.RANK_KINDS
    and schema.STATS, rank, image_id, value; by kind, stat and rank within a unit."""
    return _layer(source, run, layer, ("rows",), f"""
        SELECT unit, (list_position($kinds, kind) - 1)::UTINYINT AS kind,
               (list_position($stats, stat) - 1)::UTINYINT AS stat, rank, image_id, value
        FROM {schema.UNIT_ROWS} WHERE run_id = $run_id AND layer = $layer ORDER BY unit, kind, stat, rank""",
                  {"kinds": list(metrics_sql.RANK_KINDS), "stats": list(schema.STATS)})


def ranked_rows(source: Source, run: Run, layer: str, unit: int, kind: metrics_sql.RankKind, stat: str,
                n: int) -> tuple[np.ndarray, np.ndarray]:
    """(image_ids, values) of the unit's first n stored rows of one ranking, in rank order; fewer than min(n, images)
    when unit_rows does not hold them."""
    rows = unit_rows(source, run, layer).unit(unit)
    chosen = ((rows["kind"] == metrics_sql.RANK_KINDS.index(kind)) & (rows["stat"] == schema.STATS.index(stat))
              & (rows["rank"] <= n))
    return rows["image_id"][chosen], rows["value"][chosen]


def histogram(source: Source, run: Run, layer: str, category: str, unit: int,
              stat: str) -> unit_summary.Histogram | None:
    """The unit's stored histogram (unit_histograms) of one stat for the category; None when not stored."""
    # The counts come as numpy arrays (object columns of DuckDB's LISTs): a layer's rows as Python lists took 3-5x as
    # long to fetch (mixed5b at 286,000 images: 30 ms against 6-9 ms), and only a page's unit needs them as lists.
    rows = _layer(source, run, layer, ("histograms", category), f"""
        SELECT unit, (list_position($stats, stat) - 1)::UTINYINT AS stat, lo, hi, category_counts, rest_counts
        FROM {schema.UNIT_HISTOGRAMS} WHERE run_id = $run_id AND layer = $layer AND category = $category
        ORDER BY unit, stat""", {"category": category, "stats": list(schema.STATS)}).unit(unit)
    found = np.flatnonzero(rows["stat"] == schema.STATS.index(stat))
    if not found.size:
        return None
    row = found[0]
    return unit_summary.Histogram(lo=float(rows["lo"][row]), hi=float(rows["hi"][row]),
                                  category=rows["category_counts"][row].tolist(),
                                  rest=rows["rest_counts"][row].tolist())


def class_rows(source: Source, run: Run, layer: str, stat: str) -> ByUnit:
    """Every unit's stored class profile (unit_classes) on one stat: code (into the run's image_index classes), n,
    mean, median; by code within a unit."""
    index = image_index(source, run.run_id)
    return _layer(source, run, layer, ("classes", stat), f"""
        WITH codes AS (SELECT unnest($wnids) AS wnid, unnest($names) AS class_name,
                              unnest(range(len($wnids)))::SMALLINT AS code)
        SELECT c.unit, k.code, c.n, c.mean, c.median
        FROM {schema.UNIT_CLASSES} c JOIN codes k USING (wnid, class_name)
        WHERE c.run_id = $run_id AND c.layer = $layer AND c.stat = $stat ORDER BY c.unit, k.code""",
                  {"stat": stat, "wnids": list(index.wnids), "names": list(index.names)})
