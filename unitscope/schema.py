"""The data contract between worker and server: table and column names, the DDL, the schema version.

This module imports only the standard library, so the server can use it without torch. The SQL
that derives the metrics from these tables is in unitscope.metrics_sql.
"""

from __future__ import annotations

from typing import Final, Literal

SCHEMA_VERSION: Final = 6
# 2: unit_maps, image_stats; 3: the derived tables (worker.derived); 4: random bases; 5: the interventions;
# 6: unit labels (unitscope.labels)

Stat = Literal["mean", "max", "min"]
STATS: Final[tuple[Stat, ...]] = ("mean", "max", "min")
# Column of `responses` holding each statistic of a unit's pre-ReLU map for one image.
STAT_COLUMN: Final[dict[str, str]] = {"mean": "act_mean", "max": "act_max", "min": "act_min"}

# Defaults of the study (see docs/method.md).
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
# A unit's pre-ReLU maps are stored for its first MAP_N images of each ranking a unit page shows
# by default (positive by DEFAULT_POS_STAT, near zero by DEFAULT_NEAR_STAT, negative by
# DEFAULT_NEG_STAT): worker.map_store.
MAP_N: Final = 16
# The label-permutation null of a layer's claims (app.data.layer_tests): how many shuffles, and their
# seed. Publication stores the null for these (worker.derived); a server set to others computes it.
NULL_PERMUTATIONS: Final = 1000
NULL_SEED: Final = 0
# A unit page's rows hold at most UNIT_ROW_MAX images (app.params.N_MAX); publication stores each
# unit's first UNIT_ROW_MAX images of every ranking and stat (worker.derived_unit).
UNIT_ROW_MAX: Final = 64
# Bins of a unit's histogram: fine enough to see a half-normal against a two-sided shape.
HIST_BINS: Final = 40

META: Final = "meta"  # table names
RUNS: Final = "runs"
LAYERS_TABLE: Final = "layers"
UNITS: Final = "units"
IMAGES: Final = "images"
SKIPPED: Final = "skipped"
CATEGORIES: Final = "categories"
RESPONSES: Final = "responses"
STAGED_ROWS: Final = "staged_rows"
UNIT_SI: Final = "unit_si"
UNIT_RANKS: Final = "unit_ranks"
UNIT_MAPS: Final = "unit_maps"
IMAGE_STATS: Final = "image_stats"
# The random-basis control (Bau et al. 2017): the three stats of each direction of a few seeded random
# orthonormal rotations of a layer's channels, recorded in the forward pass (max and min do not commute
# with a rotation, so they cannot be derived afterwards); worker.basis makes the rotations.
BASES: Final = "bases"
BASIS_RESPONSES: Final = "basis_responses"
BASIS_SI: Final = "basis_si"
# Tables publication derives from a layer's published responses so that the server reads, rather
# than computes, what its pages need for the stored parameters (worker.derived), in DDL order.
UNIT_CONTROLS: Final = "unit_controls"
LAYER_NULL: Final = "layer_null"
UNIT_HISTOGRAMS: Final = "unit_histograms"
UNIT_ROWS: Final = "unit_rows"
UNIT_CLASSES: Final = "unit_classes"
UNIT_MEASURES: Final = "unit_measures"
# Each unit's label: the classes and synsets that most excite and inhibit it (unitscope.labels), on the default stats.
UNIT_LABELS: Final = "unit_labels"
UNIT_LABEL_TERMS: Final = "unit_label_terms"
# The interventions, written by their own jobs on a published run (worker.visualize, worker.ablate).
UNIT_VISUALIZATIONS: Final = "unit_visualizations"
ABLATION_GROUPS: Final = "ablation_groups"
ABLATION_CLASSES: Final = "ablation_classes"
NETWORK_CLASSES: Final = "network_classes"
INTERVENTION_TABLES: Final[tuple[str, ...]] = (NETWORK_CLASSES, UNIT_VISUALIZATIONS, ABLATION_GROUPS, ABLATION_CLASSES)
DIRECTIONS: Final = ("negative", "positive")
DERIVED_TABLES: Final[tuple[str, ...]] = (UNIT_CONTROLS, LAYER_NULL, UNIT_HISTOGRAMS, UNIT_ROWS, UNIT_CLASSES,
                                          UNIT_MEASURES, BASIS_SI, UNIT_LABELS, UNIT_LABEL_TERMS)

# Low-level statistics of each image as the network saw it (worker.image_stats), in column order.
IMAGE_STAT_COLUMNS: Final = ("luminance", "contrast", "saturation", "colourfulness", "hf_energy")

RUN_RUNNING: Final = "running"
RUN_COMPLETE: Final = "complete"

# unit_ranks.side: 'top' ranks largest first, 'bottom' smallest first.
Side = Literal["top", "bottom"]
SIDES: Final[tuple[Side, ...]] = ("top", "bottom")

_RESPONSE_COLUMNS = """
    run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
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
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,           -- the study's name, e.g. 'mixed4c'
        position SMALLINT NOT NULL,           -- depth order, 0 = conv1
        units    SMALLINT NOT NULL,
        module   VARCHAR  NOT NULL,           -- the model's own name for it
        PRIMARY KEY (run_id, layer)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {UNITS} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
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
    # A run in progress: where each stored image's responses sit in the staged arrays (worker.staged_arrays).
    f"CREATE TABLE IF NOT EXISTS {STAGED_ROWS} (image_id INTEGER NOT NULL, part VARCHAR NOT NULL, row INTEGER NOT NULL)",
    # SI of every unit for every category and stat, written at the end of a run (one scan per layer).
    f"""CREATE TABLE IF NOT EXISTS {UNIT_SI} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        category VARCHAR  NOT NULL,
        stat     VARCHAR  NOT NULL,
        unit     SMALLINT NOT NULL,
        si       DOUBLE,                      -- NULL for a unit whose response never varies
        PRIMARY KEY (run_id, layer, category, stat, unit)
    )""",
    # Each unit's first RANKED_K images by every stat, from the top (largest first) and from the
    # bottom (smallest first), ties by image_id: in_top/in_bottom for any k <= RANKED_K.
    f"""CREATE TABLE IF NOT EXISTS {UNIT_RANKS} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        stat     VARCHAR  NOT NULL,
        side     VARCHAR  NOT NULL,           -- 'top' | 'bottom'
        unit     SMALLINT NOT NULL,
        rank     SMALLINT NOT NULL,           -- 1-based
        image_id INTEGER  NOT NULL
    )""",
    # The pre-ReLU map of each unit for the images its page shows by default (MAP_N per ranking),
    # from the run's second pass; the bytes are little-endian float16, row-major (worker.map_store).
    f"""CREATE TABLE IF NOT EXISTS {UNIT_MAPS} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        unit       SMALLINT NOT NULL,
        image_id   INTEGER  NOT NULL,
        height     SMALLINT NOT NULL,         -- rows of the map
        width      SMALLINT NOT NULL,         -- columns of the map
        values_f16 BLOB     NOT NULL,         -- height x width little-endian float16, row-major
        PRIMARY KEY (run_id, layer, unit, image_id)
    )""",
    # Low-level statistics of the crop each image became (RGB 0..255, before mean subtraction),
    # written with each batch; see worker.image_stats for their definitions.
    f"""CREATE TABLE IF NOT EXISTS {IMAGE_STATS} (
        run_id   INTEGER NOT NULL,
        image_id INTEGER NOT NULL,
        {", ".join(f"{c} FLOAT NOT NULL" for c in IMAGE_STAT_COLUMNS)},
        PRIMARY KEY (run_id, image_id)
    )""",
    # A layer's per-unit controls for every category and stat (worker.derived_layer): the layer
    # page's AUROC and split-half SIs, the claims' tail shares. NULL where undefined.
    f"""CREATE TABLE IF NOT EXISTS {UNIT_CONTROLS} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        category   VARCHAR  NOT NULL,
        stat       VARCHAR  NOT NULL,
        unit       SMALLINT NOT NULL,
        auroc      DOUBLE,                    -- unitscope.stats.auroc on stat
        tail_below DOUBLE,                    -- share of the category below the rest's lower decile of stat
        tail_above DOUBLE,                    -- ... above the rest's upper decile
        si_half_a  DOUBLE,                    -- SI on stat over the even image ids (stats.split_half_si)
        si_half_b  DOUBLE,                    -- ... over the odd ones
        PRIMARY KEY (run_id, layer, category, stat, unit)
    )""",
    # A layer's label-permutation null (unitscope.nulls.permutation_null) for the parameters it
    # was computed with: one row per statistic.
    f"""CREATE TABLE IF NOT EXISTS {LAYER_NULL} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        category     VARCHAR NOT NULL,
        si_stat      VARCHAR NOT NULL,
        neg_stat     VARCHAR NOT NULL,
        k            INTEGER NOT NULL,
        threshold    DOUBLE  NOT NULL,
        permutations INTEGER NOT NULL,
        seed         BIGINT  NOT NULL,
        statistic    VARCHAR NOT NULL,       -- 'selective' | 'selective_negative' | 'median_gap'
        observed     DOUBLE,
        null_mean    DOUBLE,
        null_p95     DOUBLE,
        p            DOUBLE,
        valid        INTEGER NOT NULL,
        PRIMARY KEY (run_id, layer, category, si_stat, neg_stat, k, threshold, permutations, seed, statistic)
    )""",
    # A unit page's histogram for every category and stat (unitscope.unit_summary.bin_counts): the
    # unit's range and its counts in HIST_BINS equal bins over it (1 bin when lo = hi).
    f"""CREATE TABLE IF NOT EXISTS {UNIT_HISTOGRAMS} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        category        VARCHAR   NOT NULL,
        stat            VARCHAR   NOT NULL,
        unit            SMALLINT  NOT NULL,
        lo              DOUBLE    NOT NULL,   -- min of the unit's responses on stat
        hi              DOUBLE    NOT NULL,   -- max
        category_counts INTEGER[] NOT NULL,   -- the category's images in each bin
        rest_counts     INTEGER[] NOT NULL    -- the other images in each bin
    )""",
    # The rows of a unit page for every stat: each ranking's first UNIT_ROW_MAX images (positive and
    # negative: unit_ranks' first ones; near zero: smallest |stat| first, ties by image_id) with the
    # unit's response, so that a page reads no responses (worker.derived_unit).
    f"""CREATE TABLE IF NOT EXISTS {UNIT_ROWS} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        kind     VARCHAR  NOT NULL,           -- 'positive' | 'near_zero' | 'negative'
        stat     VARCHAR  NOT NULL,
        unit     SMALLINT NOT NULL,
        rank     SMALLINT NOT NULL,           -- 1-based
        image_id INTEGER  NOT NULL,
        value    FLOAT    NOT NULL            -- the unit's response on stat
    )""",
    # Each unit's class profile on every stat (unitscope.unit_summary.class_profiles): per class (WNID), its
    # images, mean and median response. Category-free: the server marks the category's classes.
    f"""CREATE TABLE IF NOT EXISTS {UNIT_CLASSES} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        stat       VARCHAR  NOT NULL,
        unit       SMALLINT NOT NULL,
        wnid       VARCHAR  NOT NULL,
        class_name VARCHAR  NOT NULL,
        n          INTEGER  NOT NULL,
        mean       DOUBLE   NOT NULL,
        median     DOUBLE   NOT NULL
    )""",
    # The field's other selectivity measures and the tuning shape of each unit, for every category and stat
    # (unitscope.data.measures.measures_of; docs/claims.md); NULL where undefined.
    f"""CREATE TABLE IF NOT EXISTS {UNIT_MEASURES} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        category            VARCHAR  NOT NULL,
        stat                VARCHAR  NOT NULL,
        unit                SMALLINT NOT NULL,
        d_prime             DOUBLE,
        csi                 DOUBLE,
        csi_wnid            VARCHAR,          -- the class of the highest post-ReLU mean
        beats_every_class   BOOLEAN,          -- Baek et al.'s criterion; NULL when it cannot be tested
        sparseness          DOUBLE,
        kurtosis            DOUBLE,
        half_peak_share     DOUBLE,
        sparseness_pre      DOUBLE,
        kurtosis_pre        DOUBLE,
        half_peak_share_pre DOUBLE,
        PRIMARY KEY (run_id, layer, category, stat, unit)
    )""",
    # Each unit's one-line label (unitscope.labels.label_text) on DEFAULT_POS_STAT (excites) and DEFAULT_NEG_STAT
    # (inhibits), and its terms: the classes and synsets that pass the label's q, by AUROC.
    f"""CREATE TABLE IF NOT EXISTS {UNIT_LABELS} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL, unit SMALLINT NOT NULL,
        label    VARCHAR  NOT NULL,
        PRIMARY KEY (run_id, layer, unit)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {UNIT_LABEL_TERMS} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL, unit SMALLINT NOT NULL,
        side     VARCHAR  NOT NULL,           -- 'excites' | 'inhibits'
        rank     SMALLINT NOT NULL,           -- 1 = the label's term
        wnid     VARCHAR  NOT NULL,
        name     VARCHAR  NOT NULL,
        kind     VARCHAR  NOT NULL,           -- 'class' | 'synset'
        images   INTEGER  NOT NULL,
        auroc    DOUBLE   NOT NULL,
        q        DOUBLE   NOT NULL,
        PRIMARY KEY (run_id, layer, unit, side, rank)
    )""",
    # The random bases a run recorded for each layer: basis b is the rotation worker.basis.rotation(units, seed).
    f"""CREATE TABLE IF NOT EXISTS {BASES} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        basis  SMALLINT NOT NULL,             -- 0-based
        seed   BIGINT   NOT NULL,
        PRIMARY KEY (run_id, layer, basis)
    )""",
    # The three stats of every direction of every basis, as `responses` holds the units': the pre-ReLU maps
    # rotated (direction d = sum over channels c of Q[d, c] * map c), then mean, max and min over each map.
    f"""CREATE TABLE IF NOT EXISTS {BASIS_RESPONSES} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        basis     SMALLINT NOT NULL,
        unit      SMALLINT NOT NULL,          -- the direction: row of the rotation
        image_id  INTEGER  NOT NULL,
        act_mean  FLOAT    NOT NULL,
        act_max   FLOAT    NOT NULL,
        act_min   FLOAT    NOT NULL
    )""",
    # SI of every direction of every basis, for every category and stat (worker.derived_basis).
    f"""CREATE TABLE IF NOT EXISTS {BASIS_SI} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        basis    SMALLINT NOT NULL,
        category VARCHAR  NOT NULL,
        stat     VARCHAR  NOT NULL,
        unit     SMALLINT NOT NULL,
        si       DOUBLE,
        PRIMARY KEY (run_id, layer, basis, category, stat, unit)
    )""",
    # The network's output classes (logit index -> WNID, name), written with the interventions that read its output.
    f"""CREATE TABLE IF NOT EXISTS {NETWORK_CLASSES} (
        run_id      INTEGER  NOT NULL,
        class_index SMALLINT NOT NULL,
        wnid        VARCHAR  NOT NULL,
        class_name  VARCHAR  NOT NULL,
        PRIMARY KEY (run_id, class_index)
    )""",
    # Images optimised to drive a unit up (positive) or down (negative), worker.feature_vis, and the network's
    # own reading of each: its softmax over the 1000 classes (the image upsampled to the network's input size).
    f"""CREATE TABLE IF NOT EXISTS {UNIT_VISUALIZATIONS} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        unit            SMALLINT NOT NULL,
        direction       VARCHAR  NOT NULL,    -- 'positive' | 'negative'
        idx             SMALLINT NOT NULL,    -- 0-based, the images of one unit and direction
        png             BLOB     NOT NULL,
        objective       DOUBLE   NOT NULL,    -- the unit's mean pre-ReLU response to the image, unsigned
        dataset_extreme DOUBLE   NOT NULL,    -- the run's largest (positive) or smallest (negative) act_mean
        steps           INTEGER  NOT NULL,
        size            SMALLINT NOT NULL,
        seed            BIGINT   NOT NULL,
        probs           FLOAT[]  NOT NULL,    -- softmax, by class index
        PRIMARY KEY (run_id, layer, unit, direction, idx)
    )""",
    # Ablation (worker.ablate): groups of a layer's units whose post-ReLU outputs are set to zero...
    f"""CREATE TABLE IF NOT EXISTS {ABLATION_GROUPS} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        name      VARCHAR  NOT NULL,          -- 'baseline', 'selective dog max>=0.7', 'random dog max>=0.7 3', 'unit 447'
        kind      VARCHAR  NOT NULL,          -- 'baseline' | 'selective' | 'random' | 'unit'
        category  VARCHAR,                    -- the category whose selective units the group is, or matches in size
        si_stat   VARCHAR,                    -- ... selected by SI on this stat at or above threshold
        threshold DOUBLE,
        seed      BIGINT,                     -- a random group's draw
        images    INTEGER  NOT NULL,          -- images it was tallied on (a group of another count is stale)
        units     SMALLINT[] NOT NULL,
        PRIMARY KEY (run_id, layer, name)
    )""",
    # ... and the network's accuracy on each class with them ablated.
    f"""CREATE TABLE IF NOT EXISTS {ABLATION_CLASSES} (
        run_id INTEGER NOT NULL, layer VARCHAR NOT NULL,
        name        VARCHAR  NOT NULL,
        class_index SMALLINT NOT NULL,
        n           INTEGER  NOT NULL,        -- images of the class
        top1        INTEGER  NOT NULL,        -- of them, classified correctly (top-1, top-5)
        top5        INTEGER  NOT NULL,
        p_true      DOUBLE   NOT NULL,        -- sum of the true class's probability
        PRIMARY KEY (run_id, layer, name, class_index)
    )""",
)


def basis_staging_layer(layer: str, basis: int) -> str:
    """The staged layer that holds a random basis's directions until publication moves them to basis_responses
    ('#' is in no layer's name)."""
    return f"{layer}#basis{basis}"


def stat_column(stat: str) -> str:
    """Map a statistic name to its column, refusing anything else (it is spliced into SQL)."""
    try:
        return STAT_COLUMN[stat]
    except KeyError:
        raise ValueError(f"unknown stat {stat!r}; choose one of {', '.join(STATS)}") from None
