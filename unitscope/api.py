"""The Python API: a published unitscope DB in a notebook, with the numbers the server's pages show.

    db = unitscope.open("unitscope.duckdb")   # read-only
    layer = db.run().layer("mixed4c")
    scores = layer.scores(category="dog", k=1000)
    unit = layer.unit(447)

Tables come back as DuckDB relations (pick `.fetchnumpy()`, `.df()`, `.pl()` or `.arrow()`; pandas,
polars and pyarrow are the user's, not dependencies), single series as numpy arrays. Every number
is read through unitscope.data, the readers the server's pages use, so it equals the page's. No
torch: the server's dependencies are enough.
"""

from __future__ import annotations

import itertools
import math
import numbers
import warnings
from collections.abc import Mapping
from pathlib import Path

import duckdb
import numpy as np

from unitscope import claim_rules, schema
from unitscope.data import interventions, labels, measures, rankings, runs, scores
from unitscope.data.source import ALIAS, ConnectionSource, file_identity, open_read_only
from unitscope.data.split_half import unit_halves
from unitscope.errors import Closed, NotFound, OverlapWarning
from unitscope.labels import SIDES

_names = itertools.count()  # each relation registers its arrays under a name of its own


class Database:
    """A unitscope DB opened read-only."""

    def __init__(self, path: str | Path, *, memory_limit: str = "4GB", threads: int = 2) -> None:
        self.path = Path(path)
        self._opened = file_identity(self.path)
        # Not sandboxed: a relation is the user's to save (.write_parquet, .write_csv); the file stays read-only.
        self.connection = open_read_only(self.path, memory_limit=memory_limit, threads=threads, sandboxed=False)
        self._source = ConnectionSource(self.connection)
        self._closed = False
        # The relations handed out live on a cursor of their own, so a half-read one never blocks a query.
        self._tables = self.connection.cursor()
        self._tables.execute(f"USE {ALIAS}")

    @property
    def source(self) -> ConnectionSource:
        """The readers' source (unitscope.data); Closed once close() was called."""
        self._check_open()
        return self._source

    def _check_open(self) -> None:
        if self._closed:
            raise Closed(f"{self.path} was closed (Database.close()): unitscope.open() it again")

    def runs(self) -> list[int]:
        """The complete runs' ids, newest first."""
        return [r.run_id for r in runs.runs(self.source)]

    def run(self, run_id: int | None = None) -> Run:
        """A complete run: the latest, or the one with this id."""
        run_id = None if run_id is None else _whole("a run id", run_id)
        try:
            return Run(self, runs.require_run(self.source, run_id))
        except NotFound as missing:
            if file_identity(self.path) != self._opened:  # a newer file was published: this handle reads the old one
                raise NotFound(f"{missing}; {self.path} was published again since it was opened: "
                               "unitscope.open() it again to see the new runs") from None
            raise

    def relation(self, columns: Mapping[str, np.ndarray]) -> duckdb.DuckDBPyRelation:
        """Numpy columns as a DuckDB relation of this connection; the arrays are kept until close()."""
        name = f"unitscope_api_{next(_names)}"
        self._check_open()
        self._tables.register(name, dict(columns))
        # Registered until close(): a relation derived from this one (scores["si"], .filter(...)) reads the
        # arrays by this name even once this relation object is gone.
        return self._tables.sql(f"SELECT * FROM {name}")

    def sql(self, query: str) -> duckdb.DuckDBPyRelation:
        """Any read-only SQL over the DB's tables (unitscope/schema.py), as a relation."""
        self._check_open()
        return self._tables.sql(query)

    def search(self, text: str | None = None, *, run_id: int | None = None, layer: str | None = None,
               side: str | None = None, max_q: float = 0.05, sort: labels.SortKey = "auroc",
               limit: int = 50) -> duckdb.DuckDBPyRelation:
        """Units whose label terms (a class or WordNet synset, by name or WNID) or label contain `text`: run_id,
        layer, unit, label, auroc and q (of the best matching term), si and d_prime (dog, max); the search of
        /api/units, sorted the same way. NotFound for an unknown run or layer; ValueError for a bad side, sort,
        max_q or limit (the server's 422), TypeError for a run_id, limit or max_q that is no number of its kind."""
        if sort not in labels.SORTS:
            raise ValueError(f"sort must be one of {', '.join(labels.SORTS)}, got {sort!r}")
        if side is not None and side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)} or None, got {side!r}")
        limit = _whole("limit", limit, 1)
        max_q = _number("max_q", max_q)
        if not 0 < max_q <= 1:
            raise ValueError(f"max_q must be a number in (0, 1], got {max_q!r}")
        _, hits = labels.search(self.source, text, run_id=None if run_id is None else _whole("a run id", run_id),
                                layer=layer, side=side, max_q=max_q, sort=sort, limit=limit)
        return self.relation({
            "run_id": np.array([h.run_id for h in hits], dtype=np.int64),
            "layer": np.array([h.layer for h in hits], dtype=object),
            "unit": np.array([h.unit for h in hits], dtype=np.int64),
            "label": np.array([h.label.label for h in hits], dtype=object),
            **{name: np.ma.masked_invalid(np.array([_nan(getattr(h, name)) for h in hits], dtype=np.float64))
               for name in ("auroc", "q", "si", "d_prime")},
        })

    def close(self) -> None:
        """Close the connection; relations made from it stop working, and the handle raises Closed."""
        self._closed = True
        self.connection.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"unitscope.open({str(self.path)!r})"


class Run:
    """One complete run of the worker: a model over a folder of images."""

    def __init__(self, db: Database, run: runs.Run) -> None:
        self.db, self.info = db, run

    @property
    def run_id(self) -> int:
        return self.info.run_id

    @property
    def layers(self) -> list[str]:
        """The run's layers, in depth order."""
        return list(self.info.layers)

    @property
    def categories(self) -> dict[str, int]:
        """Each category of the run and its images."""
        return dict(self.info.categories)

    def layer(self, name: str) -> Layer:
        """A layer of the run, by its name (NotFound lists the valid ones)."""
        runs.require_layer(self.info, name)
        return Layer(self, name)

    def images(self) -> duckdb.DuckDBPyRelation:
        """Every image of the run: image_id, path (relative to images_root), wnid, class_name, width, height."""
        return self.db.sql(
            f"SELECT image_id, path, wnid, class_name, width, height FROM {schema.IMAGES} "
            f"WHERE run_id = {int(self.run_id)} ORDER BY image_id")

    def __repr__(self) -> str:
        return f"<run {self.run_id}: {self.info.model}, {self.info.weights}, {self.info.images:,} images>"


class Layer:
    """A layer of a run: its units' scores, and each unit."""

    def __init__(self, run: Run, name: str) -> None:
        self.run, self.name = run, name
        self.units: int = run.info.layers[name][0]

    def scores(self, category: str = schema.DEFAULT_CATEGORY, k: int | None = None, *,
               pos_stat: str = schema.DEFAULT_POS_STAT, neg_stat: str = schema.DEFAULT_NEG_STAT,
               si_stat: str = schema.DEFAULT_SI_STAT, threshold: float = claim_rules.FIGURE_SI,
               ) -> duckdb.DuckDBPyRelation:
        """Per unit, the columns of /api/layers/{layer}'s units, in their order and with their numbers: unit, si,
        in_top, in_bottom, selective, p_top, p_bottom, q_top, q_bottom, overlap, bottom_only, in_bottom_only,
        bottom_only_share, p_bottom_only, q_bottom_only, significant_top, significant_bottom, auroc, si_half_a,
        si_half_b, d_prime, csi, csi_class, beats_every_class, the tuning shape (sparseness, kurtosis, half_peak_share,
        each also _pre) and label (docs/claims.md says how each is computed).

        k None: the pages' default for the run's size (claim_rules.default_k). SI is NULL for a unit
        whose response never varies; AUROC NULL when the category or the rest is empty.
        """
        run, source = self.run.info, self.run.db.source
        for stat in (pos_stat, neg_stat, si_stat):
            schema.stat_column(stat)  # ValueError naming the valid stats
        k = claim_rules.default_k(max(run.images, 1))[0] if k is None else _whole("k", k, 1, claim_rules.K_MAX)
        threshold = _threshold(threshold)
        runs.require_category(run, category)  # NotFound naming the run's categories
        if overlap := claim_rules.overlap_warning(k, run.images):  # the pages' warning
            warnings.warn(overlap, OverlapWarning, stacklevel=2)
        found = scores.layer_scores(source, run, self.name, category=category, k=k, si_stat=si_stat,
                                    pos_stat=pos_stat, neg_stat=neg_stat)
        p_q = found.chance
        auroc = scores.auroc(source, run, self.name, category, si_stat)
        found_measures = measures.unit_measures(source, run, self.name, category, si_stat)
        rows = found.rows
        si = np.array([math.nan if r.si is None else r.si for r in rows], dtype=np.float64)
        ex = found.exclusive
        halves = unit_halves(source, run, self.name, category, si_stat)
        unit_labels = labels.layer_labels(source, run.run_id, self.name)
        units = [r.unit for r in rows]
        # In the order of the layer page's units (app.pages.layer.UnitScore), column for column.
        columns = {
            "unit": np.array(units, dtype=np.int64),
            "si": np.ma.masked_invalid(si),
            "in_top": np.array([r.in_top for r in rows], dtype=np.int64),
            "in_bottom": np.array([r.in_bottom for r in rows], dtype=np.int64),
            "selective": np.array([claim_rules.selective(r.si, threshold) for r in rows], dtype=bool),
            **{name: p_q[name] for name in ("p_top", "p_bottom", "q_top", "q_bottom")},
            "overlap": np.array([r.overlap for r in rows], dtype=np.int64),
            "bottom_only": ex.bottom_only,
            "in_bottom_only": np.array([r.in_bottom_only for r in rows], dtype=np.int64),
            "bottom_only_share": ex.share,
            "p_bottom_only": ex.p,
            "q_bottom_only": ex.q,
            "significant_top": np.asarray(p_q["q_top"]) < claim_rules.FDR,
            "significant_bottom": np.asarray(p_q["q_bottom"]) < claim_rules.FDR,
            "auroc": np.ma.masked_invalid(np.asarray(auroc, dtype=np.float64)),
            **{name: np.ma.masked_invalid(np.array([_nan(half.get(u)) for u in units], dtype=np.float64))
               for name, half in (("si_half_a", halves.si_a), ("si_half_b", halves.si_b))},
            "d_prime": np.ma.masked_invalid(found_measures.d_prime),
            "csi": np.ma.masked_invalid(found_measures.csi),
            "csi_class": np.array(found_measures.csi_wnid, dtype=object),
            "beats_every_class": np.ma.masked_invalid(found_measures.beats_every_class).astype(bool),
            **{name: np.ma.masked_invalid(found_measures.tuning[name]) for name in measures.TUNING},
            "label": np.array([unit_labels[u].label if u in unit_labels else None for u in units], dtype=object),
        }
        return self.run.db.relation(columns)

    def ablation(self, category: str = schema.DEFAULT_CATEGORY, *, si_stat: str = schema.DEFAULT_SI_STAT,
                 threshold: float = claim_rules.FIGURE_SI) -> duckdb.DuckDBPyRelation:
        """The layer's stored ablation (python -m worker ablate) for the units selective at (si_stat, threshold): per
        group name, kind, units, top1_category, top1_rest, delta_category, delta_rest, and p on the selective row;
        the baseline first (deltas 0). NotFound when that ablation was not run; /layers/{layer}/ablation's numbers."""
        run = self.run.info
        schema.stat_column(si_stat)  # ValueError naming the valid stats
        threshold = _threshold(threshold)
        runs.require_category(run, category)
        found = interventions.layer_ablation(self.run.db.source, run, self.name, category, si_stat, threshold)
        if found is None:
            raise NotFound(f"no ablation of {self.name} for {category} at SI ({si_stat}) >= {threshold:g} in run "
                           f"{run.run_id}: python -m worker ablate --layer {self.name} --category {category}")
        rows = [interventions.GroupEffect("baseline", "baseline", (), found.top1_category, found.top1_rest, 0.0, 0.0),
                *found.groups]
        return self.run.db.relation({
            "name": np.array([g.name for g in rows], dtype=object),
            "kind": np.array([g.kind for g in rows], dtype=object),
            "units": np.array([list(g.units) for g in rows] + [None], dtype=object)[:-1],
            "top1_category": np.ma.masked_invalid(np.array([_nan(g.top1_category) for g in rows])),
            "top1_rest": np.ma.masked_invalid(np.array([_nan(g.top1_rest) for g in rows])),
            "delta_category": np.ma.masked_invalid(np.array([_nan(g.delta_category) for g in rows])),
            "delta_rest": np.ma.masked_invalid(np.array([_nan(g.delta_rest) for g in rows])),
            "p": np.ma.masked_invalid(np.array([_nan(found.p if g.kind == "selective" else None) for g in rows])),
        })

    def unit(self, unit: int) -> Unit:
        """A unit (channel) of the layer, 0-based: NotFound past either end, TypeError for anything but a whole
        number (a numpy integer is one; True and 3.0 are not)."""
        runs.require_unit(self.run.info, self.name, unit)
        return Unit(self, int(unit))

    def __repr__(self) -> str:
        return f"<layer {self.name} of run {self.run.run_id}: {self.units} units>"


class Unit:
    """One unit: its ranked images and its responses."""

    def __init__(self, layer: Layer, unit: int) -> None:
        self.layer, self.unit = layer, unit

    def _ranked(self, kind: str, stat: str, n: int, category: str) -> duckdb.DuckDBPyRelation:
        run, source = self.layer.run.info, self.layer.run.db.source
        runs.require_category(run, category)  # NotFound naming the run's categories
        schema.stat_column(stat)
        n = _whole("n", n, 1)
        rows = rankings.rankings(source, run, self.layer.name, self.unit, {kind: stat}, category, n)[kind]  # type: ignore[dict-item]
        paths = dict(source.rows(
            f"SELECT image_id, path FROM {schema.IMAGES} WHERE run_id = $run_id AND list_contains($ids, image_id)",
            {"run_id": run.run_id, "ids": [r[0] for r in rows]}))
        return self.layer.run.db.relation({
            "rank": np.arange(1, len(rows) + 1, dtype=np.int64),
            "image_id": np.array([r[0] for r in rows], dtype=np.int64),
            "value": np.array([r[4] for r in rows], dtype=np.float64),
            "wnid": np.array([r[1] for r in rows], dtype=object),
            "class_name": np.array([r[2] for r in rows], dtype=object),
            "is_category": np.array([bool(r[3]) for r in rows], dtype=bool),
            "path": np.array([paths[r[0]] for r in rows], dtype=object),
        })

    def top(self, n: int = schema.DEFAULT_N, stat: str = schema.DEFAULT_POS_STAT,
            category: str = schema.DEFAULT_CATEGORY) -> duckdb.DuckDBPyRelation:
        """The unit's n strongest positive images: rank, image_id, value, wnid, class_name, is_category, path."""
        return self._ranked("positive", stat, n, category)

    def bottom(self, n: int = schema.DEFAULT_N, stat: str = schema.DEFAULT_NEG_STAT,
               category: str = schema.DEFAULT_CATEGORY) -> duckdb.DuckDBPyRelation:
        """The unit's n strongest negative images (most negative first), with the same columns as top()."""
        return self._ranked("negative", stat, n, category)

    def near_zero(self, n: int = schema.DEFAULT_N, stat: str = schema.DEFAULT_NEAR_STAT,
                  category: str = schema.DEFAULT_CATEGORY) -> duckdb.DuckDBPyRelation:
        """The unit's n images nearest zero (by |value|), with the same columns as top()."""
        return self._ranked("near_zero", stat, n, category)

    def visualizations(self, category: str = schema.DEFAULT_CATEGORY) -> duckdb.DuckDBPyRelation:
        """The unit's optimised images (python -m worker visualize), negative first: direction, index, objective,
        dataset_extreme, steps, size, seed, top_class, top_p, category_p (the category's share of the network's
        probability) and png (bytes); empty where none were made."""
        run, source = self.layer.run.info, self.layer.run.db.source
        runs.require_category(run, category)
        stored = interventions.unit_visualizations(source, run, self.layer.name, self.unit)
        classes = interventions.network_classes(source, run)
        mask = interventions.category_mask(source, run, classes, category) if classes else None
        names = classes.names if classes else ()
        top = [int(np.argmax(v.probs)) for v in stored]
        return self.layer.run.db.relation({
            "direction": np.array([v.direction for v in stored], dtype=object),
            "index": np.array([v.index for v in stored], dtype=np.int64),
            "objective": np.array([v.objective for v in stored], dtype=np.float64),
            "dataset_extreme": np.array([v.dataset_extreme for v in stored], dtype=np.float64),
            "steps": np.array([v.steps for v in stored], dtype=np.int64),
            "size": np.array([v.size for v in stored], dtype=np.int64),
            "seed": np.array([v.seed for v in stored], dtype=np.int64),
            "top_class": np.array([names[t] if t < len(names) else str(t) for t in top], dtype=object),
            "top_p": np.array([float(v.probs[t]) for v, t in zip(stored, top, strict=True)], dtype=np.float64),
            "category_p": np.ma.masked_invalid(np.array(
                [math.nan if mask is None else v.category_p(mask) for v in stored],
                dtype=np.float64)),
            "png": np.array([interventions.visualization_png(source, run, self.layer.name, self.unit, v.direction,
                                                             v.index) for v in stored], dtype=object),
        })

    def label(self) -> labels.UnitLabel | None:
        """What most excites and inhibits the unit (label, excites, inhibits: unitscope.labels.Term tuples);
        None for a DB without labels."""
        return labels.layer_labels(self.layer.run.db.source, self.layer.run.run_id, self.layer.name).get(self.unit)

    def responses(self, stat: str = schema.DEFAULT_SI_STAT) -> np.ndarray:
        """Every image's response on `stat` (float32), in image id order: index i is the i-th image of
        Run.images()."""
        return rankings.responses(self.layer.run.db.source, self.layer.run.info, self.layer.name, self.unit, stat)[1]

    def __repr__(self) -> str:
        return f"<unit {self.unit} of {self.layer.name}, run {self.layer.run.run_id}>"


def _whole(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """value as an int: TypeError unless a whole number (a numpy integer is one; True and 3.0 are not),
    ValueError outside [low, high] (the server's 422)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} is a whole number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{low:,} to {high:,}" if high is not None else f"at least {low:,}"
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
    return int(value)


def _number(name: str, value: object) -> float:
    """value as a float: TypeError unless a real number (numpy's too; not True)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} is a number, got {value!r}")
    return float(value)


def _threshold(value: object) -> float:
    """An SI threshold: a number in [0, 1] (NaN is not one: the server's 422)."""
    threshold = _number("threshold", value)
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be an SI, between 0 and 1, got {value!r}")
    return threshold


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def open(path: str | Path, **options: object) -> Database:  # noqa: A001 (the API's name, as sqlite3.connect)
    """Open a unitscope DB read-only; Unavailable when it is not one or of another schema version."""
    return Database(path, **options)  # type: ignore[arg-type]
