"""The SQL that derives the metrics from the stored responses: in_top/in_bottom, rankings, and the reads of a layer.

Torch-free (stdlib and duckdb), so the server imports it. Each metric is defined here once: the
worker stores each unit's first RANKED_K images on both sides of every stat, the server reads those
or runs the same SQL on demand for a deeper k. SI is numpy's (unitscope.stats.si) over the layer's
columns, which these reads give.
"""

from __future__ import annotations

from typing import Final, Literal

from unitscope import schema

# Category membership of each image of a run, as a relation (image_id, is_cat).
_MEMBERSHIP = f"""
    SELECT i.image_id,
           EXISTS (SELECT 1 FROM {schema.CATEGORIES} c
                   WHERE c.run_id = i.run_id AND c.category = $category AND c.wnid = i.wnid) AS is_cat
    FROM {schema.IMAGES} i WHERE i.run_id = $run_id
"""


def membership_sql() -> str:
    """SQL giving (image_id, is_cat) for every image of a run. Parameters: $run_id, $category."""
    return _MEMBERSHIP


# The meta key that says a run's responses are stored in (layer, unit, image_id) order: publication inserts them so
# and every copy keeps DuckDB's insertion order (preserve_insertion_order, on by default).
IN_ORDER_KEY = "responses_in_order/"


def in_order_key(run_id: int) -> str:
    """The meta key of run_id's storage order."""
    return f"{IN_ORDER_KEY}{run_id}"


# Meta key prefix of a run's network: every layer of its model in depth order, comma-separated (the recorded ones may
# be a few), so that relative depth is the network's (claim_rules.default_layer). Runs published before have none.
NETWORK_KEY = "network_layers/"


def network_key(run_id: int) -> str:
    """The meta key of run_id's network layers."""
    return f"{NETWORK_KEY}{run_id}"


def layer_matrix_sql(stat: str, *, in_order: bool = False, basis: bool = False) -> str:
    """SQL giving (v): the responses of units $first..$last of one layer on `stat`, in (unit, image_id) order.

    Parameters: $run_id, $layer, $first, $last. Reshaped to (units, images) and transposed, it is the
    layer's (images x units) matrix, or those units' columns, with rows in image id order (the order of
    membership_sql's ids). in_order: the run's rows are stored in
    that order (IN_ORDER_KEY), so the scan gives it without a sort (3.6x faster: 1.1 s against 4.1 s
    for 100,000 images x 1,024 units, measured 2026-12-03; a raw read of the same floats took 0.9 s).
    basis: the directions $first..$last of the random basis $basis instead (basis_responses, which publication
    inserts in the same order as the responses).
    """
    table, which = (schema.BASIS_RESPONSES, " AND basis = $basis") if basis else (schema.RESPONSES, "")
    order = "" if in_order else " ORDER BY unit, image_id"
    return f"""SELECT {schema.stat_column(stat)} AS v FROM {table}
               WHERE run_id = $run_id AND layer = $layer{which} AND unit BETWEEN $first AND $last{order}"""


def stored_bottom_sql() -> str:
    """SQL giving (image_id): each unit's first $k stored images from the bottom of $stat, in (unit, rank) order.

    Parameters: $run_id, $layer, $stat, $k (at most RANKED_K).
    """
    return f"""SELECT image_id FROM {schema.UNIT_RANKS}
               WHERE run_id = $run_id AND layer = $layer AND stat = $stat AND side = 'bottom' AND rank <= $k
               ORDER BY unit, rank"""


def ranks_sql(stat: str, side: str) -> str:
    """SQL giving (unit, rank, image_id): each unit's first $k images of one layer by `stat`.

    Parameters: $run_id, $layer, $k. side 'top': largest first; 'bottom': smallest first.
    Ties are broken by image_id (smaller first); rank is 1-based.

    Cost: two scans of the layer's rows (images x units) and no full sort. The first finds each
    unit's k-th value with DuckDB's top-n aggregate; the second keeps only the rows at or past it,
    and only those are ordered.
    """
    col = schema.stat_column(stat)
    try:
        top_n, past, order = {"top": ("max", ">=", "DESC"), "bottom": ("min", "<=", "ASC")}[side]
    except KeyError:
        raise ValueError(f"unknown side {side!r}; choose one of {', '.join(schema.SIDES)}") from None
    return f"""
    WITH thresholds AS MATERIALIZED (
        SELECT unit, list_last({top_n}({col}, $k)) AS t
        FROM {schema.RESPONSES} WHERE run_id = $run_id AND layer = $layer
        GROUP BY unit
    ),
    edge AS (
        SELECT r.unit, r.image_id, r.{col} AS v
        FROM {schema.RESPONSES} r JOIN thresholds USING (unit)
        WHERE r.run_id = $run_id AND r.layer = $layer AND r.{col} {past} thresholds.t
    )
    SELECT unit, rank, image_id FROM (
        SELECT unit, image_id, row_number() OVER (PARTITION BY unit ORDER BY v {order}, image_id) AS rank
        FROM edge
    )
    WHERE rank <= $k
    """


def counts_sql(pos_stat: str, neg_stat: str) -> str:
    """SQL giving (unit, in_top, in_bottom, overlap, in_bottom_only) for every unit of one layer, from the responses.

    Parameters: $run_id, $layer, $category, $k.
    in_top: category images among the unit's k first by `pos_stat` from the top; in_bottom: among
    its k first by `neg_stat` from the bottom (ranks_sql's order); overlap: images in both sets;
    in_bottom_only: category images of the bottom set that are not in the top set. For k <=
    RANKED_K, stored_counts_sql gives the same from the stored ranks without scanning the responses.
    """
    return f"""
    WITH members AS MATERIALIZED ({_MEMBERSHIP}),
    ranked AS MATERIALIZED (
        SELECT unit, true AS top, image_id FROM ({ranks_sql(pos_stat, "top")})
        UNION ALL
        SELECT unit, false AS top, image_id FROM ({ranks_sql(neg_stat, "bottom")})
    )
    {_COUNTS}
    """


# The counts from `ranked` (unit, top: whether the row is of the top set, image_id) and `members` (image_id, is_cat).
# An image in both of a unit's sets is found by INTERSECT of the two sides: a correlated EXISTS per bottom row took
# about 1.4x as long (the 12 layers' default counts at 286,000 images, k = 1000: 673-684 ms against 425-511 ms).
_COUNTS = """,
    both_sides AS (
        SELECT unit, image_id FROM ranked WHERE top
        INTERSECT
        SELECT unit, image_id FROM ranked WHERE NOT top
    ),
    shared AS (
        SELECT b.unit, count(*) AS overlap, count(*) FILTER (WHERE m.is_cat) AS category_overlap
        FROM both_sides b JOIN members m USING (image_id)
        GROUP BY b.unit
    ),
    sides AS (
        SELECT r.unit, count(*) FILTER (WHERE r.top AND m.is_cat) AS in_top,
               count(*) FILTER (WHERE NOT r.top AND m.is_cat) AS in_bottom
        FROM ranked r JOIN members m USING (image_id)
        GROUP BY r.unit
    )
    SELECT s.unit, s.in_top::INTEGER AS in_top, s.in_bottom::INTEGER AS in_bottom,
           coalesce(o.overlap, 0)::INTEGER AS overlap,
           (s.in_bottom - coalesce(o.category_overlap, 0))::INTEGER AS in_bottom_only
    FROM sides s LEFT JOIN shared o USING (unit)
    ORDER BY s.unit
"""


def stored_counts_sql() -> str:
    """counts_sql's (unit, in_top, in_bottom, overlap, in_bottom_only) from the stored ranks; valid for $k <= RANKED_K.

    Parameters: $run_id, $layer, $category, $k, $pos_stat, $neg_stat.
    Cost: reads 2 x k rows per unit, whatever the number of images.
    """
    return f"""
    WITH members AS MATERIALIZED ({_MEMBERSHIP}),
    ranked AS MATERIALIZED (
        SELECT unit, side = 'top' AS top, image_id FROM {schema.UNIT_RANKS}
        WHERE run_id = $run_id AND layer = $layer AND rank <= $k
          AND ((side = 'top' AND stat = $pos_stat) OR (side = 'bottom' AND stat = $neg_stat))
    )
    {_COUNTS}
    """


RankKind = Literal["positive", "near_zero", "negative"]
RANK_KINDS: Final[tuple[RankKind, ...]] = ("positive", "near_zero", "negative")
# How each ranking orders a unit's images by `value`, the chosen stat; then by image_id.
_RANKING_ORDER: Final[dict[str, str]] = {
    "positive": "value DESC",
    "negative": "value ASC",
    "near_zero": "abs(value) ASC",
}


def ranking_sql(kind: RankKind, stat: str) -> str:
    """SQL giving one unit's n images of a ranking: (image_id, wnid, class_name, is_cat, value).

    Parameters: $run_id, $layer, $unit, $category, $n.
    positive: largest `stat` first; negative: smallest first; near_zero: smallest |stat| first.
    Ties are broken by image_id.

    The n rows are picked from the unit's responses alone (a top-n over one unit's rows) and only
    then joined to images and membership: joining first costs a hash join over every image of
    the run, about 6x slower at 286k images.
    """
    col = schema.stat_column(stat)
    order = _RANKING_ORDER[kind]
    return f"""
    WITH picked AS (
        SELECT image_id, {col} AS value FROM {schema.RESPONSES}
        WHERE run_id = $run_id AND layer = $layer AND unit = $unit
        ORDER BY {order}, image_id
        LIMIT $n
    )
    SELECT r.image_id, i.wnid, i.class_name, m.is_cat, r.value
    FROM picked r
    JOIN {schema.IMAGES} i ON i.run_id = $run_id AND i.image_id = r.image_id
    JOIN ({_MEMBERSHIP}) m ON m.image_id = r.image_id
    ORDER BY {order}, r.image_id
    """
