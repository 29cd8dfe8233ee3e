"""The SQL of a unit page's histogram and class profile, for one unit (the server) or a whole layer (publication).

Torch-free, so the server imports it. Publication runs it over every unit of a layer and stores
the result (worker.derived_unit); the server reads that, or runs the same SQL for one unit when a
DB lacks the stored rows. The page's rows of images are metrics_sql.unit_rows_sql's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from unitscope import metrics_sql, schema


@dataclass(frozen=True)
class Histogram:
    """A unit's responses on one stat, counted in equal bins over [lo, hi] for the category and the rest."""

    lo: float
    hi: float
    category: list[int]
    rest: list[int]

    @property
    def edges(self) -> list[float]:
        """The bins' len + 1 edges; one bin of width 1 centred on lo when the unit never varies."""
        bins = len(self.category)
        width = (self.hi - self.lo) / bins if self.hi > self.lo else 1.0
        start = self.lo if self.hi > self.lo else self.lo - 0.5
        return [start + i * width for i in range(bins + 1)]


def _unit_filter(one_unit: bool, alias: str = "") -> str:
    """The filter on a layer's rows: one unit ($unit), or the units $first to $last (publication, in chunks)."""
    col = f"{alias}unit"
    return f"{col} = $unit" if one_unit else f"{col} BETWEEN $first AND $last"


def histogram_sql(stat: str, *, one_unit: bool) -> str:
    """SQL giving (unit, lo, hi, is_cat, bin, count): each unit's responses on `stat` binned over its range.

    Parameters: $run_id, $layer, $category, and $unit (one_unit) or $first, $last (a range of units).
    HIST_BINS equal bins from the unit's min (lo) to its max (hi), the max in the last bin; one bin
    when lo = hi. Cost: two scans of the units' rows, the second joined to the run's membership.
    """
    col = schema.stat_column(stat)
    return f"""
    WITH ranges AS MATERIALIZED (
        SELECT unit, min({col})::DOUBLE AS lo, max({col})::DOUBLE AS hi FROM {schema.RESPONSES}
        WHERE run_id = $run_id AND layer = $layer AND {_unit_filter(one_unit)}
        GROUP BY unit
    )
    SELECT r.unit, g.lo, g.hi, m.is_cat,
           CASE WHEN g.hi > g.lo
                THEN least(floor((r.{col} - g.lo) / ((g.hi - g.lo) / {schema.HIST_BINS})), {schema.HIST_BINS - 1})
                ELSE 0 END::INTEGER AS bin,
           count(*)::INTEGER AS count
    FROM {schema.RESPONSES} r JOIN ranges g USING (unit)
    JOIN ({metrics_sql.membership_sql()}) m ON m.image_id = r.image_id
    WHERE r.run_id = $run_id AND r.layer = $layer AND {_unit_filter(one_unit, "r.")}
    GROUP BY ALL
    """


def histogram_lists_sql(stat: str) -> str:
    """SQL giving (unit, lo, hi, category_counts, rest_counts) for the units $first to $last: histogram_sql's
    counts as one list per side, every bin present (0 where empty), as unit_histograms stores them.

    Parameters: those of histogram_sql (one_unit=False). Done in SQL so that publication inserts a
    layer's histograms in one statement per stat and category, not one per unit.
    """
    return f"""
    WITH counts AS MATERIALIZED ({histogram_sql(stat, one_unit=False)}),
    units AS (SELECT DISTINCT unit, lo, hi FROM counts),
    grid AS (
        SELECT u.unit, u.lo, u.hi, side.is_cat, b.bin
        FROM units u
        CROSS JOIN (VALUES (true), (false)) side(is_cat)
        CROSS JOIN LATERAL (
            SELECT unnest(range(CASE WHEN u.hi > u.lo THEN {schema.HIST_BINS} ELSE 1 END))::INTEGER AS bin
        ) b
    )
    SELECT g.unit, g.lo, g.hi,
           list(coalesce(c.count, 0) ORDER BY g.bin) FILTER (WHERE g.is_cat) AS category_counts,
           list(coalesce(c.count, 0) ORDER BY g.bin) FILTER (WHERE NOT g.is_cat) AS rest_counts
    FROM grid g
    LEFT JOIN counts c ON c.unit = g.unit AND c.is_cat = g.is_cat AND c.bin = g.bin
    GROUP BY g.unit, g.lo, g.hi
    """


def histograms(rows: Iterable[tuple[Any, ...]]) -> dict[int, Histogram]:
    """histogram_sql's rows as one Histogram per unit."""
    result: dict[int, Histogram] = {}
    for unit, lo, hi, is_cat, b, count in rows:
        h = result.get(unit)
        if h is None:
            bins = schema.HIST_BINS if hi > lo else 1
            h = result[unit] = Histogram(lo=float(lo), hi=float(hi), category=[0] * bins, rest=[0] * bins)
        (h.category if is_cat else h.rest)[b] += count
    return result


def profile_sql(stat: str, *, one_unit: bool) -> str:
    """SQL giving (unit, wnid, class_name, n, mean, median): each unit's response to each class on `stat`.

    Parameters: $run_id, $layer, and $unit (one_unit) or $first, $last (a range of units).
    avg and median in DOUBLE: median of a FLOAT column would round its result back to FLOAT.
    Cost: one scan of the units' rows joined to the run's images, grouped by unit and class.
    """
    col = schema.stat_column(stat)
    return f"""
    SELECT r.unit, i.wnid, any_value(i.class_name) AS class_name, count(*)::INTEGER AS n,
           avg(r.{col}::DOUBLE) AS mean, median(r.{col}::DOUBLE) AS median
    FROM {schema.RESPONSES} r
    JOIN {schema.IMAGES} i ON i.run_id = r.run_id AND i.image_id = r.image_id
    WHERE r.run_id = $run_id AND r.layer = $layer AND {_unit_filter(one_unit, "r.")}
    GROUP BY r.unit, i.wnid
    """


def stored_histogram_sql() -> str:
    """SQL giving the stored (stat, lo, hi, category_counts, rest_counts) of one unit on each stat in $stats.

    Parameters: $run_id, $layer, $category, $stats (a list), $unit.
    """
    return f"""
    SELECT stat, lo, hi, category_counts, rest_counts FROM {schema.UNIT_HISTOGRAMS}
    WHERE run_id = $run_id AND layer = $layer AND category = $category AND list_contains($stats, stat) AND unit = $unit
    """


def stored_profile_sql() -> str:
    """SQL giving one unit's stored class rows (wnid, class_name, n, mean, median) on $stat.

    Parameters: $run_id, $layer, $stat, $unit.
    """
    return f"""
    SELECT wnid, class_name, n, mean, median FROM {schema.UNIT_CLASSES}
    WHERE run_id = $run_id AND layer = $layer AND stat = $stat AND unit = $unit
    """


