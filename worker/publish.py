"""Publication: a finished working file becomes a run of the published DB, atomically.

`<db>.publishing` is built in a fresh file: the published runs of `<db>`, then the new run with its
responses (from the staged arrays, worker.staged_arrays) in (layer, unit, image_id) order, its SI for
every stat and category, each unit's first RANKED_K images on both sides of every stat, and the
working file's unit_maps. It is checkpointed, closed and fsynced, then renamed over `<db>` (atomic),
so a reader of `<db>` only ever sees complete runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
from tqdm import tqdm

from unitscope import schema
from unitscope.metrics_sql import (
    IN_ORDER_KEY,
    NETWORK_KEY,
    in_order_key,
    network_key,
)
from worker import derived
from worker.db_files import (
    fsync,
    init_schema,
    open_read_only,
    remove,
    utc_now,
    wal_of,
    write_error,
)
from worker.derived_ranks import write_ranks
from worker.run_rows import run_categories, run_layers
from worker.staged_arrays import VALUES, StagedArrays, StagedIndex, narrow, staged_index

_FRAME = "_unitscope_staged"
_CHUNK_BYTES = 512 * 2**20  # what one chunk of a staged layer may take while publication inserts it


@dataclass(frozen=True)
class Published:
    """Figures of a published run."""

    run_id: int
    images: int
    skipped: int
    responses: int  # rows of `responses` for this run
    db_bytes: int
    db_values: int  # stored response values in the whole DB (rows x 3)

    @property
    def bytes_per_value(self) -> float:
        """DB file size over stored response values, everything else included."""
        return self.db_bytes / self.db_values if self.db_values else float("nan")


# Tables copied from the published DB into each new one; the staging table is never published.
_PUBLISHED_TABLES = (
    schema.RUNS,
    schema.LAYERS_TABLE,
    schema.UNITS,
    schema.CATEGORIES,
    schema.IMAGES,
    schema.IMAGE_STATS,
    schema.SKIPPED,
    schema.RESPONSES,
    schema.UNIT_SI,
    schema.UNIT_RANKS,
    schema.UNIT_MAPS,
    schema.BASES,
    schema.BASIS_RESPONSES,
    *schema.DERIVED_TABLES,
    *schema.INTERVENTION_TABLES,
)


def publish_run(
    db: Path, work: Path, publishing: Path, staged: StagedArrays, *, config: Mapping[str, str], ranked_k: int
) -> Published:
    """Publish the finished run of the working file `work` (checkpointed and closed) to `db`.

    Writes the fresh file `publishing`, makes it durable, renames it over `db` and deletes the
    working file. config: DuckDB settings of the writing connection (memory_limit). ranked_k: how
    many images of each unit to rank on each side of every stat (tests lower it).
    """
    run_id = _replace(db, publishing, lambda: _build(db, work, publishing, staged, config, ranked_k))
    remove(work, wal_of(work))
    staged.remove()
    with open_read_only(db) as con:
        figures = con.execute(
            f"SELECT (SELECT count(*) FROM {schema.IMAGES} WHERE run_id = $r), "
            f"(SELECT count(*) FROM {schema.SKIPPED} WHERE run_id = $r), "
            f"count(*) FILTER (WHERE run_id = $r), count(*) * 3 FROM {schema.RESPONSES}",
            {"r": run_id},
        ).fetchone()
    images, skipped, responses, values = figures
    return Published(run_id, images, skipped, responses, db.stat().st_size, values)


def _build(db: Path, work: Path, publishing: Path, staged: StagedArrays, config: Mapping[str, str],
           ranked_k: int) -> int:
    """Fill the fresh `publishing` file; returns the new run's id.

    Nobody else sees this file until it is renamed over `db`, and a crash before that leaves `db` as it was; each
    layer's SI, ranks and derived tables are one transaction, for speed (its many small INSERTs commit once), so a
    writer reads what the layer's earlier writers stored through `pub` itself, not a cursor of it (a cursor is
    another connection: it sees only what is committed). A layer's responses come from the staged arrays in (unit,
    image_id) order, a chunk of units per INSERT, with a CHECKPOINT after each layer, so the file ends up with no
    free blocks.
    """
    with duckdb.connect(str(publishing), config=dict(config)) as pub:
        init_schema(pub, publishing)
        if db.exists():
            _copy_published(pub, db, _PUBLISHED_TABLES)
        run_id = pub.execute(f"SELECT coalesce(max(run_id), 0) + 1 FROM {schema.RUNS}").fetchone()[0]
        pub.execute(f"ATTACH '{_sql_str(work)}' AS work (READ_ONLY)")
        p = {"new": run_id}
        pub.execute(f"INSERT INTO {schema.META} SELECT $key, m.value FROM work.{schema.META} m, work.{schema.RUNS} r "
                    "WHERE m.key = $prefix || r.run_id", {"key": network_key(run_id), "prefix": NETWORK_KEY})
        pub.execute(
            f"INSERT INTO {schema.RUNS} BY NAME SELECT * REPLACE ($new AS run_id, "
            f"'{schema.RUN_COMPLETE}' AS status, $finished AS finished_at) FROM work.{schema.RUNS}",
            {**p, "finished": utc_now()},
        )
        for table, order in ((schema.LAYERS_TABLE, "position"), (schema.UNITS, "layer, unit"),
                             (schema.CATEGORIES, "category, wnid"), (schema.IMAGES, "image_id"),
                             (schema.IMAGE_STATS, "image_id"), (schema.SKIPPED, "file_id"),
                             (schema.UNIT_MAPS, "layer, unit, image_id"), (schema.BASES, "layer, basis")):  # fmt: skip
            pub.execute(
                f"INSERT INTO {table} BY NAME SELECT * REPLACE ($new AS run_id) FROM work.{table} ORDER BY {order}",
                p,
            )
        units = dict(run_layers(pub, run_id))  # depth order
        layers = list(units)
        categories = run_categories(pub, run_id)
        index = staged_index(pub, schema_prefix="work.")
        bases = pub.execute(f"SELECT layer, basis FROM {schema.BASES} WHERE run_id = $new ORDER BY layer, basis",
                            p).fetchall()
        # Work is counted in units x steps: every step of a layer runs over its units.
        steps = 2 + len(derived.WRITERS)  # the responses, SI and ranks, then the derived tables
        bar = _progress(sum(units[layer] for layer in layers) * steps + sum(units[layer] for layer, _ in bases))
        for layer in layers:
            bar.set_postfix_str(f"{layer}: responses")
            _insert_staged(pub, staged, index, layer, units[layer], f"INSERT INTO {schema.RESPONSES} SELECT $new, "
                           f"$layer, unit, image_id, act_mean, act_max, act_min FROM {_FRAME}", {**p, "layer": layer})
            pub.execute("CHECKPOINT")
            bar.update(units[layer])
        for layer, basis in bases:
            bar.set_postfix_str(f"{layer}: random basis {basis}")
            _insert_staged(pub, staged, index, schema.basis_staging_layer(layer, basis), units[layer],
                           f"INSERT INTO {schema.BASIS_RESPONSES} SELECT $new, $layer, $basis, unit, image_id, "
                           f"act_mean, act_max, act_min FROM {_FRAME}", {**p, "layer": layer, "basis": basis})
            pub.execute("CHECKPOINT")
            bar.update(units[layer])
        pub.execute("DETACH work")
        # Inserted in (layer, unit, image_id) order, a chunk of units at a time: readers may scan without sorting.
        pub.execute(f"INSERT INTO {schema.META} VALUES ($key, 'layer, unit, image_id')", {"key": in_order_key(run_id)})
        # What the server would compute: SI for every stat and category, and each unit's first ranked_k images on
        # both sides of every stat (in_top/in_bottom for any k up to it), from one read of each stat.
        for layer in layers:
            bar.set_postfix_str(f"{layer}: SI and ranks")
            pub.begin()  # a layer's many small INSERTs committed once
            write_ranks(pub, run_id, layer, ranked_k, categories)
            bar.update(units[layer])
            derived.write_layer(pub, run_id, layer, step=_step(bar, layer, units[layer]))
            pub.commit()
        pub.execute("CHECKPOINT")
        bar.close()
    return run_id


def _insert_staged(pub: duckdb.DuckDBPyConnection, staged: StagedArrays, index: StagedIndex, layer: str, units: int,
                   sql: str, params: Mapping[str, object]) -> None:
    """Insert a staged layer's responses with `sql` (reading the relation _FRAME), in (unit, image_id) order, a
    chunk of units at a time so that memory holds a chunk, not the layer."""
    for first, values in staged.chunks(layer, units, index, chunk_units(len(index.ids))):
        pub.register(_FRAME, narrow(index.ids, values, first))
        try:
            pub.execute(sql, dict(params))
        finally:
            pub.unregister(_FRAME)


def chunk_units(images: int) -> int:
    """Units of a staged layer inserted at a time: the values, their transpose and two id columns, 4 bytes each, in
    _CHUNK_BYTES."""
    return max(1, _CHUNK_BYTES // max(1, images * VALUES * 4 * 4))


def _progress(total: int, desc: str = "publishing") -> tqdm:
    """The bar of a publication, in units x steps; its ETA assumes a unit's step costs what the last ones did."""
    return tqdm(total=total, unit="unit", desc=desc, dynamic_ncols=True, smoothing=0.1, file=sys.stderr)


def _step(bar: tqdm, layer: str, units: int) -> Callable[[str, bool], None]:
    """derived.write_layer's report: names a writer as it starts, counts its layer's units when it ends."""
    def step(name: str, done: bool) -> None:
        if done:
            bar.update(units)
        else:
            bar.set_postfix_str(f"{layer}: {name}")
    return step


def rederive(db: Path, publishing: Path, *, config: Mapping[str, str]) -> int:
    """Rewrite `db` at the current schema version with every run's derived tables computed afresh.

    For a DB published before the derived tables existed (schema.DERIVED_TABLES), or after their
    definitions changed: everything else is copied as it is, into a fresh file renamed over `db`
    as publish_run does. A DB of derived.CURRENT_SINCE or later keeps its derived tables and gets only
    those added since (derived.writers_after). Returns the number of layers derived.
    """
    with duckdb.connect(str(db), read_only=True) as old:
        version = int(old.execute(f"SELECT value FROM {schema.META} WHERE key = 'schema_version'").fetchone()[0])
    # From derived.CURRENT_SINCE on, an older file's derived tables are as today's: kept, and only the tables added
    # since are written. Anything older, or a current file, has every derived table computed afresh.
    keep = derived.CURRENT_SINCE <= version < schema.SCHEMA_VERSION
    writers = derived.writers_after(version) if keep else derived.WRITERS

    def build() -> int:
        with duckdb.connect(str(publishing), config=dict(config)) as pub:
            init_schema(pub, publishing)
            _copy_published(pub, db, tuple(t for t in _PUBLISHED_TABLES if keep or t not in schema.DERIVED_TABLES))
            layers = pub.execute(
                f"SELECT run_id, layer, units FROM {schema.LAYERS_TABLE} ORDER BY run_id, position"
            ).fetchall()
            bar = _progress(sum(units for _, _, units in layers) * len(writers), desc="deriving")
            for run_id, layer, units in layers:
                pub.begin()
                derived.write_layer(pub, run_id, layer, writers, step=_step(bar, f"run {run_id} {layer}", units))
                pub.commit()
            pub.execute("CHECKPOINT")
            bar.close()
        return len(layers)

    return _replace(db, publishing, build)


def publish_rows(db: Path, work: Path, publishing: Path, *, config: Mapping[str, str],
                 tables: Sequence[tuple[str, Sequence[str]]]) -> int:
    """Add the rows of the working file `work`'s `tables` to `db`, each replacing the published rows of its key.

    tables: (table, key columns): every published row that shares a key with a row of `work` goes, so a key coarser
    than the table's own replaces whole sets (a unit's images, a group's classes). The interventions' jobs (worker.visualize, worker.ablate) publish so: a fresh
    copy of `db` with the rows added, renamed over it as publish_run does, so the server never sees half a job.
    Returns the rows added.
    """
    def build() -> int:
        with duckdb.connect(str(publishing), config=dict(config)) as pub:
            init_schema(pub, publishing)
            _copy_published(pub, db, _PUBLISHED_TABLES)
            pub.execute(f"ATTACH '{_sql_str(work)}' AS work (READ_ONLY)")
            added = 0
            for table, key in tables:
                same = " AND ".join(f"{table}.{column} = w.{column}" for column in key)
                pub.execute(f"DELETE FROM {table} USING work.{table} AS w WHERE {same}")
                added += pub.execute(f"INSERT INTO {table} BY NAME SELECT * FROM work.{table} "
                                     f"ORDER BY {', '.join(key)}").fetchone()[0]
            pub.execute("DETACH work")
            pub.execute("CHECKPOINT")
        return added

    return _replace(db, publishing, build)


def _replace(db: Path, publishing: Path, build: Callable[[], int]) -> int:
    """Write the fresh file `publishing` with build(), make it durable and rename it over `db` (atomic).

    Returns what build returns. A failed or interrupted write (cli.main tells an interrupt from DuckDB's errors)
    removes `publishing` and leaves `db` as it was.
    """
    remove(publishing, wal_of(publishing))
    try:
        result = build()
        fsync(publishing)
        os.replace(publishing, db)
        fsync(db.parent)
    except BaseException as exc:
        remove(publishing, wal_of(publishing))
        if isinstance(exc, (duckdb.Error, OSError)):
            raise write_error(publishing, exc) from None
        raise
    return result


def _copy_published(pub: duckdb.DuckDBPyConnection, db: Path, tables: tuple[str, ...]) -> None:
    """Copy the published tables of `db` into the fresh file `pub`; a table an older version lacks stays empty."""
    pub.execute(f"ATTACH '{_sql_str(db)}' AS old (READ_ONLY)")
    present = {r[0] for r in pub.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'old'").fetchall()}
    for table in tables:
        if table in present:
            pub.execute(f"INSERT INTO {table} BY NAME SELECT * FROM old.{table}")
    # The runs' meta keys go with what they describe: the rows' order with the copied responses, the network with the
    # runs.
    for prefix, copied in ((IN_ORDER_KEY, schema.RESPONSES in tables and schema.RESPONSES in present),
                           (NETWORK_KEY, schema.RUNS in tables)):
        if copied:
            pub.execute(f"INSERT INTO {schema.META} SELECT * FROM old.{schema.META} WHERE starts_with(key, $prefix)",
                        {"prefix": prefix})
    pub.execute("DETACH old")
    pub.execute("CHECKPOINT")


def _sql_str(path: Path) -> str:
    """A path as the body of a single-quoted SQL string literal."""
    return str(path).replace("'", "''")
