"""Publication's layer controls (a worker.derived writer): what the layer and claims pages compute over
every response of a layer, stored once.

- unit_controls: each unit's AUROC, tail shares and split-half SIs, for every category and stat;
- unit_measures: each unit's d′, CSI, Baek's criterion and tuning shape, for every category and stat;
- layer_null: the layer's label-permutation null for the claims' grid of specifications (the default
  category, si_stat in claim_rules.GRID_SI_STATS, neg_stat in GRID_NEG_STATS, the run's default k,
  schema.NULL_PERMUTATIONS and NULL_SEED) at NULL_THRESHOLDS. The server computes it for any other
  parameters;
- unit_labels and unit_label_terms (worker.derived_labels), on the blocks sorted for the rank statistics.

The numbers come from the functions the server calls on the fly (unitscope.stats, unitscope.metrics_sql,
unitscope.nulls), fed the same responses a chunk of units at a time: each is per unit, so a stored value is
the value the server would compute (to the last bit of a float sum; tests/test_layer_precompute.py).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import duckdb
import numpy as np

from unitscope import claim_rules, metrics_sql, nulls, schema, selectivity, stats, tails
from unitscope.data.images import category_wnids, image_index
from unitscope.data.measures import TUNING, Measures, measures_of
from unitscope.data.runs import require_layer, require_run
from unitscope.data.scores import category_labels, layer_chunks
from unitscope.data.source import ConnectionSource
from unitscope.labels import Term
from worker.blocks import in_blocks
from worker.derived_labels import LayerLabels, write_unit_labels
from worker.run_rows import FRAME, insert_frame, or_null

# The figure's threshold (the pages' default) and Aparicio et al.'s: a second threshold costs only its
# counts, as the shuffles and products are shared (unitscope.nulls.permutation_nulls).
NULL_THRESHOLDS = claim_rules.GRID_THRESHOLDS


def null_category(categories: Sequence[str]) -> str:
    """The category the null is stored for: the study's when the run has it, else the run's first."""
    return schema.DEFAULT_CATEGORY if schema.DEFAULT_CATEGORY in categories else sorted(categories)[0]


def _write_rows(con: duckdb.DuckDBPyConnection, q: dict[str, object], categories: list[str], found: list[Measures],
                columns: dict[str, np.ndarray]) -> None:
    """unit_controls' and unit_measures' rows of one stat, every category's: one INSERT each."""
    units = len(found[0].d_prime)
    keys = {"category": np.repeat(np.array(categories, dtype=object), units),
            "unit": np.tile(np.arange(units, dtype=np.int16), len(categories))}
    insert_frame(
        con,
        f"""INSERT INTO {schema.UNIT_CONTROLS} SELECT $run_id, $layer, category, $stat, unit,
                {", ".join(or_null(name) for name in columns)} FROM {FRAME}""",
        {**keys, **{name: values.ravel() for name, values in columns.items()}}, q,
    )
    measure = {name: np.concatenate([getattr(m, name) for m in found]) for name in ("d_prime", "csi",
                                                                                    "beats_every_class")}
    insert_frame(
        con,
        f"""INSERT INTO {schema.UNIT_MEASURES} SELECT $run_id, $layer, category, $stat, unit, {or_null("d_prime")},
                {or_null("csi")}, wnid, CASE WHEN isnan(beats_every_class) THEN NULL ELSE beats_every_class <> 0 END,
                {", ".join(or_null(name) for name in TUNING)} FROM {FRAME}""",
        {**keys, **measure, "wnid": np.array([w for m in found for w in m.csi_wnid], dtype=object),
         **{name: np.concatenate([m.tuning[name] for m in found]) for name in TUNING}}, q,
    )


def write_layer_controls(con: duckdb.DuckDBPyConnection, run_id: int, layer: str) -> None:
    """Store unit_controls, unit_measures and layer_null for one published layer of run_id.

    The layer is read a chunk of units at a time (scores.layer_chunks): every number here is per unit,
    and the null keeps only per-unit counts (nulls.LayerNull), so memory holds a chunk at any number
    of images.
    """
    q = {"run_id": run_id, "layer": layer}
    # The layer's responses, labels, classes and category members read with the server's readers, so that a stored
    # value is the one the server would compute.
    source = ConnectionSource(con, database=None)
    run = require_run(source, run_id)
    units = require_layer(run, layer)[0]
    categories = sorted(run.categories)
    if not categories:  # no controls to compute: the labels on a pass of their own
        write_unit_labels(con, run_id, layer)
        return
    unit_labels = LayerLabels(source, run_id)
    labels = {c: category_labels(source, run, c) for c in categories}
    image_ids = labels[categories[0]][0]
    index = image_index(source, run_id)
    classes = index.code[image_ids]
    members = {c: category_wnids(source, run_id, c) for c in categories}
    null_cat = null_category(categories)
    shuffles = _shuffles(labels[null_cat][1])  # drawn once for the grid's four nulls
    masks = [labels[c][1] for c in categories]
    k, _ = claim_rules.default_k(len(image_ids))
    # Each negative stat's bottom sets, read once for both SI stats of the grid.
    bottoms = {neg_stat: bottom for neg_stat in claim_rules.GRID_NEG_STATS
               if (bottom := _bottom(con, run_id, layer, image_ids, units, k, neg_stat)) is not None}
    for stat in schema.STATS:
        # the claims' grid of specifications, the default's among them: one null per negative stat, sharing the SIs
        null = nulls.LayerNull(list(bottoms.values()), shuffles, thresholds=NULL_THRESHOLDS) \
            if shuffles is not None and stat in claim_rules.GRID_SI_STATS and bottoms else None

        def block(first: int, values: np.ndarray, stat: str = stat,
                  ) -> tuple[np.ndarray, list[Measures], np.ndarray, np.ndarray, list[dict[str, list[list[Term]]]],
                             np.ndarray]:
            if null is not None:
                null.add(first, values)
            aurocs, beats, terms, ends = [], [], [], []
            for _, part, runs in stats.column_runs(values):
                # Each column sorted once for every rank statistic, AUROC, Baek's tests and the labels: each is an
                # exact sum of halves, the same whatever the columns beside. The float measures take the whole
                # block, as the server's (a one-column block would sum in another order).
                aurocs.append(stats.auroc_by_category(part, masks, runs))
                beats.append(selectivity.beats_every_class(part, masks, classes, runs=runs))
                terms.append(unit_labels.find(stat, part, runs))
                ends.append(np.array([tails.both_tail_shares(part, is_cat, runs) for is_cat in masks]))
            below_above = np.concatenate(ends, axis=2)  # (categories, 2, c)
            return (np.concatenate(aurocs, axis=1),
                    measures_of(values, list(zip(masks, (members[c] for c in categories))), classes, index.wnids,
                                np.concatenate(beats, axis=1)),
                    below_above[:, 0], below_above[:, 1], terms,
                    stats.split_half_si(values, masks, image_ids))

        parts = [part for first, values in layer_chunks(source, run, layer, stat)
                 for part in in_blocks(block, first, values)]
        for part in parts:
            for found in part[4]:
                unit_labels.add(found)
        auroc, below, above = (np.concatenate([part[i] for part in parts], axis=1) for i in (0, 2, 3))
        halves = np.concatenate([part[5] for part in parts], axis=2)  # (categories, 2, units)
        found = [Measures.joined([part[1][row] for part in parts]) for row in range(len(categories))]
        _write_rows(con, {**q, "stat": stat}, categories, found,
                    {"auroc": auroc, "below": below, "above": above, "a": halves[:, 0], "b": halves[:, 1]})
        for neg_stat, results in zip(bottoms, null.results() if null is not None else []):
            _write_null(con, {**q, "category": null_cat, "si_stat": stat, "neg_stat": neg_stat, "k": k}, results)
    unit_labels.write(con, run_id, layer)


def _shuffles(is_cat: np.ndarray) -> nulls.Shuffles | None:
    """The server's default shuffles of the null's category; None when the category or the rest is empty (the
    server's null is then None at no cost)."""
    if is_cat.all() or not is_cat.any():
        return None
    return _drawn(np.packbits(is_cat).tobytes(), is_cat.size)


@functools.lru_cache(maxsize=1)
def _drawn(packed: bytes, n: int) -> nulls.Shuffles:
    """The shuffles of one category's labels, drawn once for every layer of a publication: 13 s a layer at 1.28M
    images (2026-12-04), the same draw each time."""
    is_cat = np.unpackbits(np.frombuffer(packed, np.uint8), count=n).view(np.bool_)
    return nulls.Shuffles(is_cat, schema.NULL_PERMUTATIONS, schema.NULL_SEED)


def _bottom(con: duckdb.DuckDBPyConnection, run_id: int, layer: str, image_ids: np.ndarray, units: int, k: int,
            neg_stat: str) -> np.ndarray | None:
    """Each unit's bottom set by neg_stat for the server's default k, from the stored bottom ranks (app.data.layer_tests'
    inputs), as rows of image_ids: (units, min(k, images)).

    None when the stored ranks do not reach k (a run published with a lower ranked_k): the server then
    computes that null as for any other parameters.
    """
    depth = min(k, len(image_ids))
    ids = con.execute(metrics_sql.stored_bottom_sql(), {"run_id": run_id, "layer": layer, "k": k,
                                                        "stat": neg_stat}).fetchnumpy()["image_id"]
    if ids.size != units * depth:
        return None
    return np.searchsorted(image_ids, ids).reshape(units, depth)


# A null statistic's fields, in layer_null's column order (observed, null_mean, null_p95, p).
STATISTIC_FIELDS = ("observed", "null_mean", "null_p95", "p_value")


def _write_null(con: duckdb.DuckDBPyConnection, q: dict[str, object], results: Sequence[nulls.NullResult]) -> None:
    """layer_null's rows of one (category, si_stat, neg_stat): every threshold and statistic, in one INSERT."""
    rows = [(result, name, getattr(result, name)) for result, name in itertools.product(results, nulls.NULL_STATISTICS)]
    insert_frame(
        con,
        f"""INSERT INTO {schema.LAYER_NULL} SELECT $run_id, $layer, $category, $si_stat, $neg_stat, $k, threshold,
                permutations, seed, statistic, {", ".join(map(or_null, STATISTIC_FIELDS))}, valid FROM {FRAME}""",
        {"threshold": np.array([r.threshold for r, _, _ in rows], dtype=np.float64),
         "permutations": np.array([r.permutations for r, _, _ in rows], dtype=np.int64),
         "seed": np.array([r.seed for r, _, _ in rows], dtype=np.int64),
         "statistic": np.array([name for _, name, _ in rows], dtype=object),
         **{field: np.array([getattr(st, field) for _, _, st in rows], dtype=np.float64) for field in STATISTIC_FIELDS},
         "valid": np.array([st.valid for _, _, st in rows], dtype=np.int64)},
        q,
    )
