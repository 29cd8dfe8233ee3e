"""Publication's writer for unit pages: every unit's histograms, near-zero images and class profiles.

Every ranking's first UNIT_ROW_MAX images on every stat, with their values (metrics_sql.unit_rows_sql);
for every stat, the class profile (unit_sql.profile_sql); for every stat and category, the histogram
(unit_sql.histogram_lists_sql).
The server's unit page then reads these rows instead of scanning the unit's responses.
"""

from __future__ import annotations

import duckdb

from unitscope import metrics_sql, schema, unit_sql
from worker.run_rows import run_categories

# Units per statement of the grouped queries: about this many responses at once, so that the
# median's per-group buffers stay within the publishing connection's memory limit.
_CHUNK_RESPONSES = 8_000_000


def write_unit_pages(con: duckdb.DuckDBPyConnection, run_id: int, layer: str) -> None:
    """Store what a unit page of `layer` reads for the stored parameters (a derived.Writer)."""
    p = {"run_id": run_id, "layer": layer}
    units, images = con.execute(
        f"SELECT (SELECT units FROM {schema.LAYERS_TABLE} WHERE run_id = $run_id AND layer = $layer), "
        f"(SELECT count(*) FROM {schema.IMAGES} WHERE run_id = $run_id)", p,
    ).fetchone()  # fmt: skip
    categories = run_categories(con, run_id)
    step = max(1, _CHUNK_RESPONSES // max(images, 1))
    chunks = [{**p, "first": first, "last": min(first + step, units) - 1} for first in range(0, units, step)]
    con.execute(
        f"INSERT INTO {schema.UNIT_ROWS} SELECT $run_id, $layer, kind, stat, unit, rank, image_id, value "
        f"FROM ({metrics_sql.unit_rows_sql()}) ORDER BY unit, kind, stat, rank",
        {**p, "n": schema.UNIT_ROW_MAX},
    )
    for stat in schema.STATS:
        for chunk in chunks:
            con.execute(
                f"INSERT INTO {schema.UNIT_CLASSES} SELECT $run_id, $layer, $stat, unit, wnid, class_name, n, "
                f"mean, median FROM ({unit_sql.profile_sql(stat, one_unit=False)}) ORDER BY unit, wnid",
                {**chunk, "stat": stat},
            )
        for category in categories:
            for chunk in chunks:
                con.execute(
                    f"INSERT INTO {schema.UNIT_HISTOGRAMS} SELECT $run_id, $layer, $category, $stat, unit, lo, hi, "
                    f"category_counts, rest_counts FROM ({unit_sql.histogram_lists_sql(stat)}) ORDER BY unit",
                    {**chunk, "category": category, "stat": stat},
                )
