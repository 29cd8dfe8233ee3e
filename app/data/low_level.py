"""The reads of the low-level test: a run's image_stats, and the category's responses they are compared with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unitscope import metrics_sql, schema
from unitscope.data.runs import Run, table_names
from unitscope.data.source import Source


@dataclass(frozen=True)
class ImageStats:
    """A run's image_stats as one array: row i holds image i's statistics (NaN for an image without them)."""

    names: tuple[str, ...]
    values: np.ndarray  # float64 [max image id + 1, len(names)]


def image_stats(source: Source, run: Run) -> ImageStats | None:
    """The run's image_stats, read once per run and DB generation; None when the run has none."""
    return source.cached(("image_stats", run.run_id), lambda: _read_image_stats(source, run), keep=True)


def _read_image_stats(source: Source, run: Run) -> ImageStats | None:
    if schema.IMAGE_STATS not in table_names(source):
        return None
    names = schema.IMAGE_STAT_COLUMNS
    cols = source.arrays(
        f"SELECT image_id, {', '.join(names)} FROM {schema.IMAGE_STATS} WHERE run_id = $run_id ORDER BY image_id",
        {"run_id": run.run_id},
    )
    ids = cols["image_id"]
    if len(ids) == 0:
        return None
    values = np.full((int(ids.max()) + 1, len(names)), np.nan)
    values[ids] = np.column_stack([cols[name] for name in names])
    return ImageStats(names=names, values=values)


@dataclass(frozen=True)
class CategoryResponses:
    """A unit's category images: their ids, its response on one stat, and whether each is in its top/bottom k."""

    image_ids: np.ndarray
    response: np.ndarray
    in_top: np.ndarray  # bool
    in_bottom: np.ndarray  # bool


def category_responses(source: Source, run: Run, layer: str, unit: int, *, category: str, si_stat: str,
                       pos_stat: str, neg_stat: str, k: int) -> CategoryResponses:
    """The unit's category images with its response on si_stat, flagged by its top k (pos_stat) and
    bottom k (neg_stat), both ranked by metrics_sql.ranking_sql (the unit page's own rankings); k is the
    one in use (the k given, or the default the context chose for the run)."""
    col = schema.stat_column(si_stat)
    cols = source.arrays(
        f"""
        WITH top AS ({metrics_sql.ranking_sql("positive", pos_stat)}),
             bottom AS ({metrics_sql.ranking_sql("negative", neg_stat)})
        SELECT r.image_id, r.{col} AS response,
               r.image_id IN (SELECT image_id FROM top) AS in_top,
               r.image_id IN (SELECT image_id FROM bottom) AS in_bottom
        FROM {schema.RESPONSES} r JOIN ({metrics_sql.membership_sql()}) m USING (image_id)
        WHERE r.run_id = $run_id AND r.layer = $layer AND r.unit = $unit AND m.is_cat
        ORDER BY r.image_id
        """,
        {"run_id": run.run_id, "layer": layer, "unit": unit, "category": category, "n": k},
    )
    return CategoryResponses(cols["image_id"], cols["response"].astype(np.float64),
                             cols["in_top"].astype(bool), cols["in_bottom"].astype(bool))  # fmt: skip


def layer_category_responses(
    source: Source, run: Run, layer: str, units: list[int], stat: str, category: str
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each of `units`: (category image ids, response on `stat`), in image id order."""
    if not units:
        return {}
    col = schema.stat_column(stat)
    cols = source.arrays(
        f"""
        SELECT r.unit, r.image_id, r.{col} AS response
        FROM {schema.RESPONSES} r JOIN ({metrics_sql.membership_sql()}) m USING (image_id)
        WHERE r.run_id = $run_id AND r.layer = $layer AND m.is_cat AND list_contains($units, r.unit)
        ORDER BY r.unit, r.image_id
        """,
        {"run_id": run.run_id, "layer": layer, "category": category, "units": units},
    )
    unit_col = cols["unit"]
    starts = np.searchsorted(unit_col, units, side="left")
    ends = np.searchsorted(unit_col, units, side="right")
    return {
        u: (cols["image_id"][a:b], cols["response"][a:b].astype(np.float64))
        for u, a, b in zip(units, starts, ends)
    }
