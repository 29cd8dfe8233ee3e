"""A layer's scores per unit (SI, in_top, in_bottom, overlap, in_bottom_only, their chance p and q, AUROC) and the
matrices behind them.

The Python API's Layer.scores() and the server's layer page both read through layer_scores(), so a
number on a page is the API's. Publication stores SI, the ranks and AUROC for its parameters
(unitscope.schema); other parameters are computed with the same SQL and statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import numpy as np

from unitscope import claim_rules, metrics_sql, schema, stats
from unitscope.data.runs import Run, require_category, require_layer, table_names
from unitscope.data.source import Source, stored_or_computed
from unitscope.errors import Unavailable

T = TypeVar("T")


class ScoreRow(NamedTuple):
    """One unit's scores for one parameter set."""

    unit: int
    si: float | None
    in_top: int  # category images among its top k (by pos_stat)
    in_bottom: int  # category images among its bottom k (by neg_stat)
    overlap: int  # images in both its top k and its bottom k
    in_bottom_only: int  # category images of its bottom k that are not in its top k


@dataclass(frozen=True)
class Exclusive:
    """Per unit, in row order, the exclusive test: its bottom-k images that are not in its top k."""

    bottom_only: np.ndarray  # min(k, images) - overlap
    share: np.ndarray  # in_bottom_only / bottom_only: the category's share among them; 0 when there is none
    p: np.ndarray  # unitscope.stats.exclusive_p: more of the category than a draw from outside the top k?
    q: np.ndarray  # p's Benjamini-Hochberg q-values across the layer's units


@dataclass(frozen=True)
class Scores:
    """One layer's scores for one parameter set, with the tests of its counts (which do not depend on SI)."""

    rows: tuple[ScoreRow, ...]
    source: str  # "precomputed" when publication stored both SI and the counts, else "computed"
    chance: dict[str, np.ndarray]  # p_top, p_bottom, q_top, q_bottom in row order (see chance())
    exclusive: Exclusive
    by_unit: dict[int, ScoreRow] = field(default_factory=dict, compare=False)


def layer_scores(source: Source, run: Run, layer: str, *, category: str, k: int, si_stat: str, pos_stat: str,
                 neg_stat: str) -> Scores:
    """(unit, si, in_top, in_bottom, overlap, in_bottom_only) for each unit, from the stored tables when they hold it.

    SI (per category and stat) and the counts (per category, k, pos_stat and neg_stat) are looked up
    or computed separately, each cached with its own parameters, so changing only si_stat or only k
    recomputes only the part that depends on it.
    """
    units = require_layer(run, layer)[0]
    require_category(run, category)
    base = (run.run_id, layer, category)
    si, si_stored = source.cached((*base, "si", si_stat), lambda: _layer_si(source, run, layer, units, category,
                                                                            si_stat))
    counts, counts_stored = source.cached((*base, "counts", k, pos_stat, neg_stat), lambda: _layer_counts(
        source, run, layer, units, category, k, pos_stat, neg_stat))
    n_category = run.categories[category]
    # The counts' tests, once per counts: the claims page asks for the same counts under every SI stat and threshold.
    p_q, ex = source.cached((*base, "count_tests", k, pos_stat, neg_stat), lambda: (
        chance(counts, k, run.images, n_category), exclusive(counts, k, run.images, n_category)))
    rows = tuple(ScoreRow(unit, si[unit], *rest) for unit, *rest in counts)
    return Scores(rows=rows, source="precomputed" if si_stored and counts_stored else "computed", chance=p_q,
                  exclusive=ex, by_unit={r[0]: r for r in rows})


def selective_anywhere(source: Source, run: Run, layer: str, category: str) -> frozenset[int]:
    """The layer's units selective for `category` under some specification of the claims' grid: SI on any of
    claim_rules.GRID_SI_STATS at or above the lowest of GRID_THRESHOLDS. A control group of "other units" leaves them
    out, so that units picked as selective under one specification are not another's controls. The same for every
    cell of the claims' grid: read once per run, layer and category."""
    units = require_layer(run, layer)[0]
    lowest = min(claim_rules.GRID_THRESHOLDS)
    return source.cached(("selective_anywhere", run.run_id, layer, category), lambda: frozenset(
        unit for stat in claim_rules.GRID_SI_STATS
        for unit, si in _layer_si(source, run, layer, units, category, stat)[0].items()
        if si is not None and si >= lowest))


def _layer_si(source: Source, run: Run, layer: str, units: int, category: str,
              stat: str) -> tuple[dict[int, float | None], bool]:
    q = {"run_id": run.run_id, "layer": layer, "category": category}

    def stored() -> list[Any] | None:
        rows = source.rows(
            f"""SELECT unit, si FROM {schema.UNIT_SI}
                WHERE run_id = $run_id AND layer = $layer AND category = $category AND stat = $stat
                ORDER BY unit""",
            {**q, "stat": stat},
        )
        return rows if len(rows) == units else None

    def computed() -> list[tuple[int, float | None]]:
        # stats.si over the layer's columns, as publication stores it (worker.derived_ranks): the same to the bit.
        found = stats.si(layer_matrix(source, run, layer, stat), category_labels(source, run, category)[1])
        return [(u, None if np.isnan(si) else si) for u, si in enumerate(found.tolist())]

    rows, was_stored = stored_or_computed(stored, lambda: whole_layer(source, run, layer, computed))
    return {int(u): None if si is None else float(si) for u, si in rows}, was_stored


def _layer_counts(source: Source, run: Run, layer: str, units: int, category: str, k: int, pos_stat: str,
                  neg_stat: str) -> tuple[tuple[tuple[int, ...], ...], bool]:
    q = {"run_id": run.run_id, "layer": layer, "category": category, "k": k}

    def stored() -> list[Any] | None:
        if min(k, run.images) > stored_rank_depth(source, run, layer):  # the stored ranks must reach k
            return None
        rows = source.rows(metrics_sql.stored_counts_sql(), {**q, "pos_stat": pos_stat, "neg_stat": neg_stat})
        return rows if len(rows) == units else None

    rows, was_stored = stored_or_computed(stored, lambda: whole_layer(
        source, run, layer, lambda: source.rows(metrics_sql.counts_sql(pos_stat, neg_stat), q)))
    return tuple(tuple(int(x) for x in row) for row in rows), was_stored


def stored_rank_depth(source: Source, run: Run, layer: str) -> int:
    """How many images of each side publication ranked for the layer's units (RANKED_K, or fewer for a small run
    or a DB published with a lower ranked_k); 0 when none."""
    return source.cached((run.run_id, layer, "rank_depth"), lambda: int(source.rows(
        f"SELECT coalesce(max(rank), 0) FROM {schema.UNIT_RANKS} WHERE run_id = $run_id AND layer = $layer",
        {"run_id": run.run_id, "layer": layer})[0][0]), keep=True)


def exclusive(counts: tuple[tuple[int, ...], ...], k: int, n_images: int, n_category: int) -> Exclusive:
    """The exclusive test of every unit of a layer from its (unit, in_top, in_bottom, overlap, in_bottom_only) rows."""
    in_top = np.array([c[1] for c in counts], dtype=np.int64)
    overlap = np.array([c[3] for c in counts], dtype=np.int64)
    in_bottom_only = np.array([c[4] for c in counts], dtype=np.int64)
    bottom_only = min(k, n_images) - overlap
    share = np.divide(in_bottom_only, bottom_only, out=np.zeros(len(overlap)), where=bottom_only > 0)
    p = stats.exclusive_p(in_top, overlap, in_bottom_only, k, n_images, n_category)
    return Exclusive(bottom_only=bottom_only, share=share, p=p, q=stats.bh_qvalues(p))


def chance(counts: tuple[tuple[int, ...], ...], k: int, n_images: int, n_category: int) -> dict[str, np.ndarray]:
    """Per unit, in row order: p_top, p_bottom (hypergeometric upper tails of in_top, in_bottom) and their BH q_top,
    q_bottom across the layer's units."""
    out: dict[str, np.ndarray] = {}
    for side, column in (("top", 1), ("bottom", 2)):
        p = stats.hypergeom_sf_array([c[column] for c in counts], k, n_images, n_category)
        out[f"p_{side}"], out[f"q_{side}"] = p, stats.bh_qvalues(p)
    return out


UNIT_COLUMNS = ("auroc", "tail_below", "tail_above", "si_half_a", "si_half_b")  # the columns of unit_controls


def stored_unit_column(source: Source, run: Run, layer: str, category: str, stat: str,
                       column: str) -> np.ndarray | None:
    """One column of publication's unit_controls for every unit of the layer, in unit order, NaN where
    undefined; None when not stored."""
    if column not in UNIT_COLUMNS:
        raise ValueError(f"unknown unit_controls column {column!r}")  # it is spliced into SQL
    if schema.UNIT_CONTROLS not in table_names(source):
        return None
    units = require_layer(run, layer)[0]
    values = source.arrays(
        # NaN, the statistics' own "undefined", for NULL: a plain float array, not a masked one.
        f"""SELECT coalesce({column}, 'NaN'::DOUBLE) AS v FROM {schema.UNIT_CONTROLS}
            WHERE run_id = $run_id AND layer = $layer AND category = $category AND stat = $stat ORDER BY unit""",
        {"run_id": run.run_id, "layer": layer, "category": category, "stat": stat},
    )["v"]
    return values.astype(np.float64, copy=False) if values.size == units else None


def auroc(source: Source, run: Run, layer: str, category: str, stat: str) -> np.ndarray:
    """Per unit, the AUROC of the category against the rest on `stat` (NaN where undefined): stored, else
    computed from the layer's responses (unitscope.stats.auroc)."""
    def compute() -> np.ndarray:
        return stats.auroc(layer_matrix(source, run, layer, stat), category_labels(source, run, category)[1])

    return source.cached((run.run_id, layer, category, stat, "auroc"), lambda: stored_or_computed(
        lambda: stored_unit_column(source, run, layer, category, stat, "auroc"),
        lambda: whole_layer(source, run, layer, compute))[0])


def category_labels(source: Source, run: Run, category: str) -> tuple[np.ndarray, np.ndarray]:
    """(image_ids, is_cat) of every image of the run, in image id order: the row order of layer_matrix."""
    cols = source.arrays(
        f"SELECT image_id, is_cat FROM ({metrics_sql.membership_sql()}) ORDER BY image_id",
        {"run_id": run.run_id, "category": category},
    )
    return cols["image_id"], cols["is_cat"].astype(bool)


# A computation over every response of a layer holds about this many (images, units) float32 matrices at its
# peak: the matrix, the DuckDB result it is fetched from, and the statistics' working arrays. Measured: one layer
# page at a threshold of its own raised the server's peak RSS by 479 MB for a 82 MB matrix (40,000 images x 512
# units), of which DuckDB's buffer pool, bounded on its own by --memory-limit, holds the largest share.
WHOLE_LAYER_COPIES = 4


def whole_layer(source: Source, run: Run, layer: str, work: Callable[[], T]) -> T:
    """work(), which reads every response of the layer, as the Source's heavy work with its memory estimate."""
    units = require_layer(run, layer)[0]
    return source.heavy(work, estimate=WHOLE_LAYER_COPIES * 4 * units * run.images)


def layer_matrix(source: Source, run: Run, layer: str, stat: str) -> np.ndarray:
    """Every response of a layer on one stat: (images, units) float32, rows in image id order.

    Memory: 4 bytes x images x units (13 MB for mixed4c at 6,308 images, 590 MB at 286,000).
    """
    units = require_layer(run, layer)[0]
    # Once per request: AUROC, the null and the tails of one page read the same matrix.
    return source.matrix((run.run_id, layer, stat), lambda: _columns(source, run, layer, stat, 0, units - 1))


def _columns(source: Source, run: Run, layer: str, stat: str, first: int, last: int,
             basis: int | None = None) -> np.ndarray:
    """Units first..last of a layer on one stat (or directions of its random basis `basis`): (images, last - first +
    1) float32, rows in image id order."""
    q = {"run_id": run.run_id, "layer": layer, "first": first, "last": last}
    values = source.arrays(metrics_sql.layer_matrix_sql(stat, in_order=run.in_order, basis=basis is not None),
                           q if basis is None else {**q, "basis": basis})["v"]
    if values.size != (last - first + 1) * run.images:
        what = "units" if basis is None else f"directions of basis {basis} of"
        raise Unavailable(f"{what} {first}-{last} of {layer} of run {run.run_id} hold {values.size:,} responses, "
                          "not units x images")
    return values.astype(np.float32, copy=False).reshape(last - first + 1, run.images).T


def unit_column(source: Source, run: Run, layer: str, stat: str, unit: int) -> np.ndarray:
    """One unit's responses on one stat: (images, 1) float32, rows in image id order (a column of layer_matrix)."""
    return _columns(source, run, layer, stat, unit, unit)


# A chunk of layer_chunks: about this many bytes of float32 responses (104 units at 1.28M images).
CHUNK_BYTES = 512 * 2**20


def layer_chunks(source: Source, run: Run, layer: str, stat: str,
                 basis: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """layer_matrix a chunk of units at a time: (first unit, (images, c) float32 columns), so that memory holds a
    chunk, not the layer. Publication's derived tables read a layer so, at any number of images. basis: the
    directions of that random basis of the layer instead."""
    units = require_layer(run, layer)[0]
    step = max(1, CHUNK_BYTES // max(1, 4 * run.images))
    for first in range(0, units, step):
        yield first, _columns(source, run, layer, stat, first, min(first + step, units) - 1, basis)


def bottom_rows(source: Source, run: Run, layer: str, stat: str, k: int, image_ids: np.ndarray) -> np.ndarray:
    """Each unit's first min(k, images) from the bottom of `stat`, as row indices into layer_matrix: (units, k).

    The stored ranks when they reach min(k, images), else the same ranking SQL over the responses.
    """
    units = require_layer(run, layer)[0]
    depth = min(k, run.images)
    q = {"run_id": run.run_id, "layer": layer, "k": k}

    def stored() -> np.ndarray | None:
        if depth > stored_rank_depth(source, run, layer):  # the stored ranks must reach k, as for the counts
            return None
        ids = source.arrays(metrics_sql.stored_bottom_sql(), {**q, "stat": stat})["image_id"]
        return ids if ids.size == units * depth else None

    ids, _ = stored_or_computed(stored, lambda: whole_layer(source, run, layer, lambda: source.arrays(
        f"SELECT image_id FROM ({metrics_sql.ranks_sql(stat, 'bottom')}) ORDER BY unit, rank", q)["image_id"]))
    return np.searchsorted(image_ids, ids).reshape(units, depth)


