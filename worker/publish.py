"""Publication: a finished working file becomes a run of the published DB, atomically.

`<db>.publishing` is built in a fresh file: the published runs of `<db>`, then the new run with its
responses sorted by (layer, unit, image_id), its SI for every stat and category, each unit's
first RANKED_K images on both sides of every stat, and the second pass's unit_maps. It is
checkpointed, closed and fsynced, then renamed over `<db>` (atomic), so a reader of `<db>` only
ever sees complete runs. A fresh file is written, rather than the working file published, because
deleting the staging rows in place leaves their blocks in the file (measured: 2.2x the size of a
freshly written copy).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from unitscope import schema
from unitscope.metrics_sql import insert_ranks, si_sql
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
from worker.run_rows import run_categories


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
    db: Path, work: Path, publishing: Path, *, config: Mapping[str, str], ranked_k: int
) -> Published:
    """Publish the finished run of the working file `work` (checkpointed and closed) to `db`.

    Writes the fresh file `publishing`, makes it durable, renames it over `db` and deletes the
    working file. config: DuckDB settings of the writing connection (memory_limit). ranked_k: how
    many images of each unit to rank on each side of every stat (tests lower it).
    """
    run_id = _replace(db, publishing, lambda: _build(db, work, publishing, config, ranked_k))
    remove(work, wal_of(work))
    with open_read_only(db) as con:
        figures = con.execute(
            f"SELECT (SELECT count(*) FROM {schema.IMAGES} WHERE run_id = $r), "
            f"(SELECT count(*) FROM {schema.SKIPPED} WHERE run_id = $r), "
            f"count(*) FILTER (WHERE run_id = $r), count(*) * 3 FROM {schema.RESPONSES}",
            {"r": run_id},
        ).fetchone()
    images, skipped, responses, values = figures
    return Published(run_id, images, skipped, responses, db.stat().st_size, values)


def _build(db: Path, work: Path, publishing: Path, config: Mapping[str, str], ranked_k: int) -> int:
    """Fill the fresh `publishing` file; returns the new run's id.

    No transaction is needed here: nobody else sees this file until it is renamed over `db`, and a
    crash before that leaves `db` as it was. Responses go in one sorted INSERT per layer with a
    CHECKPOINT after each, so the file ends up with no free blocks.
    """
    with duckdb.connect(str(publishing), config=dict(config)) as pub:
        init_schema(pub, publishing)
        if db.exists():
            _copy_published(pub, db, _PUBLISHED_TABLES)
        run_id = pub.execute(f"SELECT coalesce(max(run_id), 0) + 1 FROM {schema.RUNS}").fetchone()[0]
        pub.execute(f"ATTACH '{_sql_str(work)}' AS work (READ_ONLY)")
        p = {"new": run_id}
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
        layers = [r[0] for r in pub.execute(
            f"SELECT layer FROM {schema.LAYERS_TABLE} WHERE run_id = $new ORDER BY position", p
        ).fetchall()]  # fmt: skip
        categories = run_categories(pub, run_id)
        for layer in layers:
            # One layer at a time keeps each sort small (the study's 286k images would be 1.7
            # billion rows at once); the table ends up in (layer, unit, image_id) order.
            pub.execute(
                f"INSERT INTO {schema.RESPONSES} SELECT $new, layer, unit, image_id, act_mean, act_max, act_min "
                f"FROM work.{schema.STAGING} WHERE layer = $layer ORDER BY unit, image_id",
                {**p, "layer": layer},
            )
            pub.execute("CHECKPOINT")
        for layer, basis in pub.execute(
                f"SELECT layer, basis FROM {schema.BASES} WHERE run_id = $new ORDER BY layer, basis", p).fetchall():
            pub.execute(
                f"INSERT INTO {schema.BASIS_RESPONSES} SELECT $new, $layer, $basis, unit, image_id, act_mean, act_max, "
                f"act_min FROM work.{schema.STAGING} WHERE layer = $staged ORDER BY unit, image_id",
                {**p, "layer": layer, "basis": basis, "staged": schema.basis_staging_layer(layer, basis)},
            )
            pub.execute("CHECKPOINT")
        pub.execute("DETACH work")
        # The same SQL the server runs: SI for every stat and category, and each unit's first
        # ranked_k images on both sides of every stat (in_top/in_bottom for any k up to it).
        for layer in layers:
            for category in categories:
                pub.execute(
                    f"INSERT INTO {schema.UNIT_SI} SELECT $run_id, $layer, $category, stat, unit, si "
                    f"FROM ({si_sql()})",
                    {"run_id": run_id, "layer": layer, "category": category},
                )
            insert_ranks(pub, run_id, layer, ranked_k)
            derived.write_layer(pub, run_id, layer)
        pub.execute("CHECKPOINT")
    return run_id


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
                f"SELECT run_id, layer FROM {schema.LAYERS_TABLE} ORDER BY run_id, position"
            ).fetchall()
            for run_id, layer in layers:
                derived.write_layer(pub, run_id, layer, writers)
            pub.execute("CHECKPOINT")
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

    Returns what build returns. A failed write removes `publishing` and leaves `db` as it was.
    """
    remove(publishing, wal_of(publishing))
    try:
        result = build()
        fsync(publishing)
        os.replace(publishing, db)
        fsync(db.parent)
    except (duckdb.Error, OSError) as exc:
        remove(publishing)
        raise write_error(publishing, exc) from None
    return result


def _copy_published(pub: duckdb.DuckDBPyConnection, db: Path, tables: tuple[str, ...]) -> None:
    """Copy the published tables of `db` into the fresh file `pub`; a table an older version lacks stays empty."""
    pub.execute(f"ATTACH '{_sql_str(db)}' AS old (READ_ONLY)")
    present = {r[0] for r in pub.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'old'").fetchall()}
    for table in tables:
        if table in present:
            pub.execute(f"INSERT INTO {table} BY NAME SELECT * FROM old.{table}")
    pub.execute("DETACH old")
    pub.execute("CHECKPOINT")


def _sql_str(path: Path) -> str:
    """A path as the body of a single-quoted SQL string literal."""
    return str(path).replace("'", "''")
