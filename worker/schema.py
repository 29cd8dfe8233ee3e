"""The data contract between worker and server: tables, columns, version, and the derived metrics.

This module imports only the standard library, so the server can use it without torch.
The SQL for SI, in_top/in_bottom and the per-unit rankings lives here, once: the worker runs
it at the end of a run (SI for every stat and category, each unit's first RANKED_K images on both
sides of every stat), the server reads those or runs the same SQL on demand for other parameters.
"""

from __future__ import annotations

from typing import Final, Literal

SCHEMA_VERSION: Final = 1

# The study's layer names, in network order, with their unit counts.
LAYER_UNITS: Final[dict[str, int]] = {
    "conv1": 64,
    "conv2": 64,
    "conv3": 192,
    "mixed3a": 256,
    "mixed3b": 480,
    "mixed4a": 512,
    "mixed4b": 512,
    "mixed4c": 512,
    "mixed4d": 528,
    "mixed4e": 832,
    "mixed5a": 832,
    "mixed5b": 1024,
}
LAYERS: Final = tuple(LAYER_UNITS)

Stat = Literal["mean", "max", "min"]
STATS: Final[tuple[Stat, ...]] = ("mean", "max", "min")
# Column of `responses` holding each statistic of a unit's pre-ReLU map for one image.
STAT_COLUMN: Final[dict[str, str]] = {"mean": "act_mean", "max": "act_max", "min": "act_min"}

# Defaults of the study (see README, "Method").
DEFAULT_CATEGORY: Final = "dog"
DEFAULT_K: Final = 1000
DEFAULT_N: Final = 8
DEFAULT_POS_STAT: Final[Stat] = "max"
DEFAULT_NEG_STAT: Final[Stat] = "min"
DEFAULT_NEAR_STAT: Final[Stat] = "mean"
DEFAULT_SI_STAT: Final[Stat] = "max"
# Each unit's first RANKED_K images on both sides of every stat are stored at the end of a run,
# so in_top/in_bottom for any k up to it is a lookup (the study's k is 1000).
RANKED_K: Final = DEFAULT_K
SELECTIVE_SI: Final = 0.65  # Aparicio et al. 2016
FIGURE_SI: Final = 0.7  # the study's figure marks SI >= 0.7

# Table names.
META: Final = "meta"
RUNS: Final = "runs"
LAYERS_TABLE: Final = "layers"
UNITS: Final = "units"
IMAGES: Final = "images"
SKIPPED: Final = "skipped"
CATEGORIES: Final = "categories"
RESPONSES: Final = "responses"
STAGING: Final = "responses_staging"
UNIT_SI: Final = "unit_si"
UNIT_RANKS: Final = "unit_ranks"

RUN_RUNNING: Final = "running"
RUN_COMPLETE: Final = "complete"

_RESPONSE_COLUMNS = """
    run_id   INTEGER  NOT NULL,
    layer    VARCHAR  NOT NULL,
    unit     SMALLINT NOT NULL,
    image_id INTEGER  NOT NULL,
    act_mean FLOAT    NOT NULL,
    act_max  FLOAT    NOT NULL,
    act_min  FLOAT    NOT NULL
"""

DDL: Final[tuple[str, ...]] = (
    f"CREATE TABLE IF NOT EXISTS {META} (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS {RUNS} (
        run_id         INTEGER PRIMARY KEY,
        status         VARCHAR NOT NULL,      -- 'running' until the run is published complete
        config_hash    VARCHAR NOT NULL,      -- what makes a rerun of the same command a resume
        model          VARCHAR NOT NULL,      -- 'bvlc-googlenet' | 'googlenet'
        weights        VARCHAR NOT NULL,      -- where the weights came from
        weights_sha256 VARCHAR NOT NULL,      -- sha256 over the weight files, in sorted order
        preprocessing  VARCHAR NOT NULL,      -- JSON description of the image transform
        images_root    VARCHAR NOT NULL,      -- absolute folder; images.path is relative to it
        n_files        INTEGER NOT NULL,      -- files found; = images + skipped once complete
        device         VARCHAR NOT NULL,
        dtype          VARCHAR NOT NULL,
        started_at     TIMESTAMP NOT NULL,
        finished_at    TIMESTAMP
    )""",
    f"""CREATE TABLE IF NOT EXISTS {LAYERS_TABLE} (
        run_id   INTEGER  NOT NULL,
        layer    VARCHAR  NOT NULL,           -- the study's name, e.g. 'mixed4c'
        position SMALLINT NOT NULL,           -- depth order, 0 = conv1
        units    SMALLINT NOT NULL,
        module   VARCHAR  NOT NULL,           -- the model's own name for it
        PRIMARY KEY (run_id, layer)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {UNITS} (
        run_id  INTEGER  NOT NULL,
        layer   VARCHAR  NOT NULL,
        unit    SMALLINT NOT NULL,            -- 0-based channel index in the layer
        branch  VARCHAR  NOT NULL,            -- '1x1' | '3x3' | '5x5' | 'pool_proj' | 'conv'
        PRIMARY KEY (run_id, layer, unit)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {IMAGES} (
        run_id      INTEGER  NOT NULL,
        image_id    INTEGER  NOT NULL,        -- index of the file in the run's sorted file list
        path        VARCHAR  NOT NULL,        -- relative to runs.images_root
        wnid        VARCHAR  NOT NULL,        -- the ImageFolder folder name
        class_index SMALLINT,                 -- ImageNet-1k index; NULL for a non-WNID folder
        class_name  VARCHAR  NOT NULL,
        width       INTEGER  NOT NULL,
        height      INTEGER  NOT NULL,
        mode        VARCHAR  NOT NULL,        -- PIL mode before conversion to RGB
        PRIMARY KEY (run_id, image_id)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {SKIPPED} (
        run_id  INTEGER NOT NULL,
        file_id INTEGER NOT NULL,             -- same numbering as images.image_id
        path    VARCHAR NOT NULL,
        reason  VARCHAR NOT NULL,
        PRIMARY KEY (run_id, file_id)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {CATEGORIES} (
        run_id   INTEGER NOT NULL,
        category VARCHAR NOT NULL,
        wnid     VARCHAR NOT NULL,
        PRIMARY KEY (run_id, category, wnid)
    )""",
    # Published responses, appended once per run in (layer, unit, image_id) order so that
    # DuckDB's zone maps skip to one layer or one unit.
    f"CREATE TABLE IF NOT EXISTS {RESPONSES} ({_RESPONSE_COLUMNS})",
    # Batches of a run in progress, in arrival order; moved to `responses` when the run completes.
    f"CREATE TABLE IF NOT EXISTS {STAGING} ({_RESPONSE_COLUMNS})",
    # SI of every unit for every category and stat, written at the end of a run (one scan per layer).
    f"""CREATE TABLE IF NOT EXISTS {UNIT_SI} (
        run_id   INTEGER  NOT NULL,
        layer    VARCHAR  NOT NULL,
        category VARCHAR  NOT NULL,
        stat     VARCHAR  NOT NULL,
        unit     SMALLINT NOT NULL,
        si       DOUBLE,                      -- NULL for a unit whose response never varies
        PRIMARY KEY (run_id, layer, category, stat, unit)
    )""",
    # Each unit's first RANKED_K images by every stat, from the top (largest first) and from the
    # bottom (smallest first), ties by image_id: in_top/in_bottom for any k <= RANKED_K.
    f"""CREATE TABLE IF NOT EXISTS {UNIT_RANKS} (
        run_id   INTEGER  NOT NULL,
        layer    VARCHAR  NOT NULL,
        stat     VARCHAR  NOT NULL,
        side     VARCHAR  NOT NULL,           -- 'top' | 'bottom'
        unit     SMALLINT NOT NULL,
        rank     SMALLINT NOT NULL,           -- 1-based
        image_id INTEGER  NOT NULL
    )""",
)


def stat_column(stat: str) -> str:
    """Map a statistic name to its column, refusing anything else (it is spliced into SQL)."""
    try:
        return STAT_COLUMN[stat]
    except KeyError:
        raise ValueError(f"unknown stat {stat!r}; choose one of {', '.join(STATS)}") from None


# Category membership of each image of a run, as a relation (image_id, is_cat).
_MEMBERSHIP = f"""
    SELECT i.image_id,
           EXISTS (SELECT 1 FROM {CATEGORIES} c
                   WHERE c.run_id = i.run_id AND c.category = $category AND c.wnid = i.wnid) AS is_cat
    FROM {IMAGES} i WHERE i.run_id = $run_id
"""


def membership_sql() -> str:
    """SQL giving (image_id, is_cat) for every image of a run. Parameters: $run_id, $category."""
    return _MEMBERSHIP


def _si(stat: str) -> str:
    col = stat_column(stat)
    lo, cat, rest = f"min_{col}", f"cat_{col}", f"rest_{col}"
    return f"""CASE WHEN max_{col} > {lo} AND ({cat} - {lo}) + ({rest} - {lo}) > 0
                 THEN ({cat} - {lo}) / (({cat} - {lo}) + ({rest} - {lo})) END"""


def si_sql() -> str:
    """SQL giving (unit, stat, si) for every unit of one layer and every stat.

    Parameters: $run_id, $layer, $category.

    SI on a stat: each unit's responses are min-max normalised over all images of the run,
    A_N = (A - min A) / (max A - min A); SI = mean_C(A_N) / (mean_C(A_N) + mean_notC(A_N)).
    Because A_N is affine in A, mean_C(A_N) = (mean_C(A) - min A) / (max A - min A), so one
    grouped scan gives all three stats. SI is NULL for a unit whose response never varies.
    Cost: one scan of the layer's rows (images x units) joined to the run's category membership.
    """
    aggregates = ",\n               ".join(
        f"min({c}) AS min_{c}, max({c}) AS max_{c}, "
        f"avg({c}) FILTER (WHERE m.is_cat) AS cat_{c}, avg({c}) FILTER (WHERE NOT m.is_cat) AS rest_{c}"
        for c in STAT_COLUMN.values()
    )
    per_stat = "\n    UNION ALL ".join(
        f"SELECT unit, '{stat}' AS stat, {_si(stat)} AS si FROM agg" for stat in STATS
    )
    return f"""
    WITH agg AS MATERIALIZED (
        SELECT r.unit,
               {aggregates}
        FROM {RESPONSES} r JOIN ({_MEMBERSHIP}) m USING (image_id)
        WHERE r.run_id = $run_id AND r.layer = $layer
        GROUP BY r.unit
    )
    {per_stat}
    ORDER BY unit, stat
    """


Side = Literal["top", "bottom"]
SIDES: Final[tuple[Side, ...]] = ("top", "bottom")


def ranks_sql(stat: str, side: str) -> str:
    """SQL giving (unit, rank, image_id): each unit's first $k images of one layer by `stat`.

    Parameters: $run_id, $layer, $k. side 'top': largest first; 'bottom': smallest first.
    Ties are broken by image_id (smaller first); rank is 1-based.

    Cost: two scans of the layer's rows (images x units) and no full sort. The first finds each
    unit's k-th value with DuckDB's top-n aggregate; the second keeps only the rows at or past it,
    and only those are ordered.
    """
    col = stat_column(stat)
    try:
        top_n, past, order = {"top": ("max", ">=", "DESC"), "bottom": ("min", "<=", "ASC")}[side]
    except KeyError:
        raise ValueError(f"unknown side {side!r}; choose one of {', '.join(SIDES)}") from None
    return f"""
    WITH thresholds AS MATERIALIZED (
        SELECT unit, list_last({top_n}({col}, $k)) AS t
        FROM {RESPONSES} WHERE run_id = $run_id AND layer = $layer
        GROUP BY unit
    ),
    edge AS (
        SELECT r.unit, r.image_id, r.{col} AS v
        FROM {RESPONSES} r JOIN thresholds USING (unit)
        WHERE r.run_id = $run_id AND r.layer = $layer AND r.{col} {past} thresholds.t
    )
    SELECT unit, rank, image_id FROM (
        SELECT unit, image_id, row_number() OVER (PARTITION BY unit ORDER BY v {order}, image_id) AS rank
        FROM edge
    )
    WHERE rank <= $k
    """


def counts_sql(pos_stat: str, neg_stat: str) -> str:
    """SQL giving (unit, in_top, in_bottom) for every unit of one layer, from the responses.

    Parameters: $run_id, $layer, $category, $k.
    in_top: category images among the unit's k first by `pos_stat` from the top; in_bottom: among
    its k first by `neg_stat` from the bottom (ranks_sql's order). For k <= RANKED_K,
    stored_counts_sql gives the same from the stored ranks without scanning the responses.
    """
    return f"""
    WITH members AS MATERIALIZED ({_MEMBERSHIP}),
    top AS ({ranks_sql(pos_stat, "top")}),
    bottom AS ({ranks_sql(neg_stat, "bottom")}),
    top_counts AS (
        SELECT t.unit, count(*) FILTER (WHERE m.is_cat) AS c FROM top t JOIN members m USING (image_id)
        GROUP BY t.unit
    ),
    bottom_counts AS (
        SELECT b.unit, count(*) FILTER (WHERE m.is_cat) AS c FROM bottom b JOIN members m USING (image_id)
        GROUP BY b.unit
    )
    SELECT unit, t.c::INTEGER AS in_top, b.c::INTEGER AS in_bottom
    FROM top_counts t JOIN bottom_counts b USING (unit)
    ORDER BY unit
    """


def stored_counts_sql() -> str:
    """SQL giving (unit, in_top, in_bottom) from the stored ranks; valid for $k <= RANKED_K.

    Parameters: $run_id, $layer, $category, $k, $pos_stat, $neg_stat.
    Cost: reads 2 x k rows per unit, whatever the number of images.
    """
    return f"""
    SELECT r.unit,
           (count(*) FILTER (WHERE r.side = 'top' AND m.is_cat))::INTEGER AS in_top,
           (count(*) FILTER (WHERE r.side = 'bottom' AND m.is_cat))::INTEGER AS in_bottom
    FROM {UNIT_RANKS} r JOIN ({_MEMBERSHIP}) m USING (image_id)
    WHERE r.run_id = $run_id AND r.layer = $layer AND r.rank <= $k
      AND ((r.side = 'top' AND r.stat = $pos_stat) OR (r.side = 'bottom' AND r.stat = $neg_stat))
    GROUP BY r.unit
    ORDER BY r.unit
    """


RankKind = Literal["positive", "near_zero", "negative"]
RANK_KINDS: Final[tuple[RankKind, ...]] = ("positive", "near_zero", "negative")


def ranking_sql(kind: RankKind, stat: str) -> str:
    """SQL giving one unit's n images of a ranking: (image_id, wnid, class_name, is_cat, value).

    Parameters: $run_id, $layer, $unit, $category, $n.
    positive: largest `stat` first; negative: smallest first; near_zero: smallest |stat| first.
    Ties are broken by image_id.

    The n rows are picked from the unit's responses alone (a top-n over one unit's rows) and only
    then joined to images and membership: joining first costs a hash join over every image of
    the run, about 6x slower at 286k images.
    """
    col = stat_column(stat)
    order = {
        "positive": "value DESC",
        "negative": "value ASC",
        "near_zero": "abs(value) ASC",
    }[kind]
    return f"""
    WITH picked AS (
        SELECT image_id, {col} AS value FROM {RESPONSES}
        WHERE run_id = $run_id AND layer = $layer AND unit = $unit
        ORDER BY {order}, image_id
        LIMIT $n
    )
    SELECT r.image_id, i.wnid, i.class_name, m.is_cat, r.value
    FROM picked r
    JOIN {IMAGES} i ON i.run_id = $run_id AND i.image_id = r.image_id
    JOIN ({_MEMBERSHIP}) m ON m.image_id = r.image_id
    ORDER BY {order}, r.image_id
    """
