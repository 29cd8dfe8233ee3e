"""A unit's images: its ranked rows (strongest positive, near zero, strongest negative) and every response."""

from __future__ import annotations

import numpy as np

from unitscope import metrics_sql, schema
from unitscope.data import unit_tables
from unitscope.data.images import category_wnids, image_index
from unitscope.data.runs import Run
from unitscope.data.source import Source, stored_or_computed

RankedImage = tuple[int, str, str, bool, float]  # image_id, wnid, class_name, is_cat, value


def rankings(source: Source, run: Run, layer: str, unit: int, stats: dict[metrics_sql.RankKind, str],
             category: str, n: int) -> dict[metrics_sql.RankKind, list[RankedImage]]:
    """A unit's n images of each ranking in `stats` (kind -> stat).

    From unit_rows (the layer's, read once: unitscope.data.unit_tables; the images' classes from the image index)
    where it holds the first n, else ranked over the unit's responses.
    """
    params = {"run_id": run.run_id, "layer": layer, "unit": unit, "n": n}
    index = image_index(source, run.run_id)
    members = category_wnids(source, run.run_id, category)
    found: dict[metrics_sql.RankKind, list[RankedImage]] = {}
    for kind, stat in stats.items():
        ids, values = unit_tables.ranked_rows(source, run, layer, unit, kind, stat, n)
        rows = [(image_id, wnid, index.class_name(image_id), wnid in members, value)
                for image_id, value in zip(ids.tolist(), values.tolist()) for wnid in (index.wnid(image_id),)]
        found[kind], _ = stored_or_computed(
            lambda: rows if len(rows) == min(n, run.images) else None,
            lambda: source.rows(metrics_sql.ranking_sql(kind, stat), {**params, "category": category}),
        )
    return found


def responses(source: Source, run: Run, layer: str, unit: int, stat: str) -> tuple[np.ndarray, np.ndarray]:
    """(image_ids, values): every image's response of the unit on `stat`, in image id order."""
    cols = source.arrays(
        f"""SELECT image_id, {schema.stat_column(stat)} AS v FROM {schema.RESPONSES}
            WHERE run_id = $run_id AND layer = $layer AND unit = $unit ORDER BY image_id""",
        {"run_id": run.run_id, "layer": layer, "unit": unit},
    )
    return cols["image_id"].astype(np.int64), cols["v"].astype(np.float32)


RESPONSE_COLUMNS = ("image_id", "path", "wnid", "class_name", "act_mean", "act_max", "act_min")


def all_responses(source: Source, run: Run, layer: str, unit: int) -> dict[str, np.ndarray]:
    """Every image's three stats for one unit, with its path (relative to the run's images_root) and class, in
    image id order: the columns of RESPONSE_COLUMNS (the unit's CSV and Parquet downloads)."""
    return source.arrays(
        f"""SELECT r.image_id, i.path, i.wnid, i.class_name, r.act_mean, r.act_max, r.act_min
            FROM {schema.RESPONSES} r JOIN {schema.IMAGES} i ON i.run_id = r.run_id AND i.image_id = r.image_id
            WHERE r.run_id = $run_id AND r.layer = $layer AND r.unit = $unit ORDER BY r.image_id""",
        {"run_id": run.run_id, "layer": layer, "unit": unit},
    )


def class_ranking(source: Source, run: Run, layer: str, unit: int, wnid: str, stat: str) -> list[tuple[int, float, int]]:
    """One class's images by the unit's response on `stat`, strongest first (ties by image id): (image_id, value,
    rank among every image of the run, 1 = the unit's strongest)."""
    column = schema.stat_column(stat)
    return [(int(i), float(v), int(r)) for i, v, r in source.rows(
        f"""SELECT image_id, v, r FROM (
                SELECT r.image_id, r.{column} AS v, i.wnid,
                       row_number() OVER (ORDER BY r.{column} DESC, r.image_id) AS r
                FROM {schema.RESPONSES} r JOIN {schema.IMAGES} i ON i.run_id = r.run_id AND i.image_id = r.image_id
                WHERE r.run_id = $run_id AND r.layer = $layer AND r.unit = $unit)
            WHERE wnid = $wnid ORDER BY r""",
        {"run_id": run.run_id, "layer": layer, "unit": unit, "wnid": wnid})]
