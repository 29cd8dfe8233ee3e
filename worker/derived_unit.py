"""Publication's writer for unit pages: every unit's rows of images, histograms and class profiles.

For every stat, a chunk of units at a time (in threads): each ranking's first UNIT_ROW_MAX images with their
values (positive and negative: the stored unit_ranks' first ones; near zero: unitscope.unit_summary.first_rows),
every category's histogram and the class profile (unit_summary). The server's unit page then reads these rows
instead of its unit's responses.
"""

from __future__ import annotations

from typing import NamedTuple

import duckdb
import numpy as np

from unitscope import schema, unit_summary
from unitscope.data.images import image_index
from unitscope.data.runs import require_layer, require_run
from unitscope.data.scores import category_labels, layer_chunks
from unitscope.data.source import ConnectionSource
from worker.blocks import in_blocks
from worker.run_rows import FRAME, insert_frame

# unit_rows' kinds and stats as codes in name order, so that rows sorted by code are sorted by name.
KINDS = sorted(("positive", "near_zero", "negative"))
STATS = sorted(schema.STATS)


class _Block(NamedTuple):
    """What one block of a chunk's columns gives for one stat."""

    counts: unit_summary.BinCounts
    profiles: unit_summary.ClassProfiles
    near: np.ndarray  # (columns, depth) rows nearest zero
    near_values: np.ndarray  # (columns, depth) their values
    ranked: np.ndarray  # indices into the stored ranks of this block's units
    ranked_values: np.ndarray  # their values


def write_unit_pages(con: duckdb.DuckDBPyConnection, run_id: int, layer: str) -> None:
    """Store what a unit page of `layer` reads for the stored parameters (a derived.Writer)."""
    p = {"run_id": run_id, "layer": layer}
    # The server's readers, so that the columns, masks and classes are in the order it would compute them in.
    source = ConnectionSource(con, database=None)
    run = require_run(source, run_id)
    units = require_layer(run, layer)[0]
    categories = sorted(run.categories)
    index = image_index(source, run_id)
    image_ids = np.flatnonzero(index.code >= 0)  # the rows of layer_chunks
    if not image_ids.size:
        return
    codes = index.code[image_ids]
    masks = [category_labels(source, run, c)[1] for c in categories]
    ranked = con.execute(
        f"SELECT stat, side, unit, rank, image_id FROM {schema.UNIT_RANKS} "
        "WHERE run_id = $run_id AND layer = $layer AND rank <= $n", {**p, "n": schema.UNIT_ROW_MAX},
    ).fetchnumpy()
    ranked_unit = ranked["unit"].astype(np.int64)
    ranked_row = np.searchsorted(image_ids, ranked["image_id"])
    columns: list[list[np.ndarray]] = [[] for _ in range(6)]  # unit_rows' kind, stat, unit, rank, row, value

    for stat in schema.STATS:
        mine = np.flatnonzero(ranked["stat"] == stat)

        def block(first: int, values: np.ndarray, mine: np.ndarray = mine) -> _Block:
            ours = mine[(ranked_unit[mine] >= first) & (ranked_unit[mine] < first + values.shape[1])]
            near = unit_summary.first_rows(values, schema.UNIT_ROW_MAX, "near_zero")
            return _Block(unit_summary.bin_counts(values, masks),
                          unit_summary.class_profiles(values, codes, len(index.wnids)),
                          near, values[near, np.arange(len(near))[:, None]],
                          ours, values[ranked_row[ours], ranked_unit[ours] - first])

        blocks = [b for first, values in layer_chunks(source, run, layer, stat) for b in in_blocks(block, first, values)]
        counts = unit_summary.BinCounts.joined([b.counts for b in blocks])
        _write_histograms(con, {**p, "stat": stat}, counts, categories)
        _write_classes(con, {**p, "stat": stat}, [b.profiles for b in blocks], index.wnids, index.names)
        near = np.concatenate([b.near for b in blocks])
        depth = near.shape[1]
        ours = np.concatenate([b.ranked for b in blocks])
        for part, near_part, ranked_part in zip(
            columns,
            (np.full(near.size, KINDS.index("near_zero")), np.full(near.size, STATS.index(stat)),
             np.repeat(np.arange(units), depth), np.tile(np.arange(1, depth + 1), units), near.ravel(),
             np.concatenate([b.near_values for b in blocks]).ravel()),
            (np.where(ranked["side"][ours] == "top", KINDS.index("positive"), KINDS.index("negative")),
             np.full(ours.size, STATS.index(stat)), ranked_unit[ours], ranked["rank"][ours], ranked_row[ours],
             np.concatenate([b.ranked_values for b in blocks])),
        ):
            part += [near_part, ranked_part]
    kind, stat_code, unit, rank, row, value = (np.concatenate(c) for c in columns)
    order = np.lexsort((rank, stat_code, kind, unit))
    insert_frame(
        con,
        f"INSERT INTO {schema.UNIT_ROWS} SELECT $run_id, $layer, kind, stat, unit, rank, image_id, value FROM {FRAME}",
        {"kind": np.array(KINDS, dtype=object)[kind[order]], "stat": np.array(STATS, dtype=object)[stat_code[order]],
         "unit": unit[order].astype(np.int16), "rank": rank[order].astype(np.int16),
         "image_id": image_ids[row[order]].astype(np.int32), "value": value[order].astype(np.float32)},
        p,
    )


def _write_histograms(con: duckdb.DuckDBPyConnection, q: dict[str, object], counts: unit_summary.BinCounts,
                      categories: list[str]) -> None:
    """unit_histograms' rows of one stat: every category's, by category and unit."""
    # Each unit's bins as rows (BinCounts.histogram's), folded into its two lists in SQL: numpy columns in.
    unit, b = np.nonzero(np.arange(schema.HIST_BINS) < counts.bins()[:, None])
    for row, category in enumerate(categories):
        cat = counts.category[row]
        insert_frame(
            con,
            f"""INSERT INTO {schema.UNIT_HISTOGRAMS}
                SELECT $run_id, $layer, $category, $stat, unit, any_value(lo), any_value(hi),
                       list(cat ORDER BY bin), list(rest ORDER BY bin)
                FROM {FRAME} GROUP BY unit ORDER BY unit""",
            {"unit": unit.astype(np.int16), "bin": b.astype(np.int16), "lo": counts.lo[unit], "hi": counts.hi[unit],
             "cat": cat[unit, b].astype(np.int32), "rest": (counts.total - cat)[unit, b].astype(np.int32)},
            {**q, "category": category},
        )


def _write_classes(con: duckdb.DuckDBPyConnection, q: dict[str, object], profiles: list[unit_summary.ClassProfiles],
                   wnids: list[str], names: list[str]) -> None:
    """unit_classes' rows of one stat: every unit's classes with images, by unit and WNID."""
    n = profiles[0].n
    present = np.flatnonzero(n)
    mean = np.concatenate([p.mean[:, present] for p in profiles])
    units = len(mean)
    insert_frame(
        con,
        f"""INSERT INTO {schema.UNIT_CLASSES}
            SELECT $run_id, $layer, $stat, unit, wnid, class_name, n, mean, median FROM {FRAME}""",
        {"unit": np.repeat(np.arange(units, dtype=np.int16), len(present)),
         "wnid": np.tile(np.array(wnids, dtype=object)[present], units),
         "class_name": np.tile(np.array(names, dtype=object)[present], units),
         "n": np.tile(n[present].astype(np.int32), units),
         "mean": mean.ravel(), "median": np.concatenate([p.median[:, present] for p in profiles]).ravel()},
        q,
    )
