"""Opening the worker's DuckDB files: the schema check, the schema itself, and the errors they raise."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Final

import duckdb

from unitscope import schema
from unitscope.data.source import is_duckdb_file


class StoreError(RuntimeError):
    """The DB cannot be opened, locked or written; the message names the file and what to do."""


def no_db(db: Path) -> StoreError:
    """The error for a published DB that is not there: a first run may still be writing it beside."""
    if db.with_name(db.name + ".partial").exists():
        return StoreError(f"{db} is not published yet: a run is being written to {db.name}.partial (resume it with "
                          f"python -m worker run --db {db}); this job reads the published file")
    if db.is_dir():
        return StoreError(f"{db} is a folder, not a DuckDB file: name the DB file that python -m worker run wrote")
    return StoreError(f"{db} does not exist: publish a run first (python -m worker run --db {db})")


def wal_of(path: Path) -> Path:
    """DuckDB's write-ahead log beside a database file."""
    return path.with_name(path.name + ".wal")


def remove(*paths: Path) -> None:
    """Delete files that may not exist."""
    for path in paths:
        path.unlink(missing_ok=True)


def fsync(path: Path) -> None:
    """Make a file's (or a folder's) contents durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def utc_now() -> datetime:
    """Timestamps are stored as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a DuckDB file, or a StoreError naming it."""
    if path.is_file() and not is_duckdb_file(path):  # DuckDB's own error would not say so (a Parquet file, say)
        raise StoreError(f"{path} is not a DuckDB file, so not a unitscope DB; use another --db")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open {path} as a DuckDB file: {first_line(exc)}") from None


def check_version(
    con: duckdb.DuckDBPyConnection, where: Path, *, accept: Collection[int] = (schema.SCHEMA_VERSION,)
) -> bool:
    """Refuse a DuckDB file that is not a unitscope DB of an accepted schema version; False if it is empty."""
    query = "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    tables = {row[0] for row in con.execute(query).fetchall()}
    if not tables:
        return False
    if schema.META not in tables:
        raise StoreError(
            f"{where} is a DuckDB file but not a unitscope DB (no '{schema.META}' table); use another --db"
        )
    row = con.execute(f"SELECT value FROM {schema.META} WHERE key = 'schema_version'").fetchone()
    if row is None or row[0] not in {str(v) for v in accept}:
        found = row[0] if row else "unknown"
        hint = "`python -m worker derive --db FILE` upgrades it" if found in {str(v) for v in UPGRADABLE} else "use another --db"
        raise StoreError(f"{where} has schema version {found}, this worker writes version {schema.SCHEMA_VERSION}; {hint}")
    return True


# Versions `python -m worker derive` rewrites to the current one: the same tables, without the derived ones
# (2) or the random bases (3, whose runs then have none: the axis_aligned claim cannot tell), or the labels (5).
UPGRADABLE: Final = (2, 3, 4, 5)


def init_schema(con: duckdb.DuckDBPyConnection, where: Path) -> None:
    """Create the tables in a new file and stamp the schema version, or check an existing file's."""
    if check_version(con, where):
        return
    for ddl in schema.DDL:
        con.execute(ddl)
    con.execute(f"INSERT INTO {schema.META} VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)])


def write_error(path: Path, exc: BaseException) -> StoreError:
    """The error for a failed write (a full disk, a read-only folder): nothing published was changed."""
    return StoreError(
        f"cannot write {path}: {first_line(exc)} (disk full or read-only?); the published DB is "
        "unchanged, and rerunning the same command resumes from the last stored batch"
    )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Transaction:
    """BEGIN/COMMIT around one batch; a failed write rolls back and becomes a StoreError naming the file."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con, self.path = con, path

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.con.begin()
        return self.con

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            try:
                self.con.commit()
                return
            except (duckdb.Error, OSError) as exc:
                error = exc
        try:
            self.con.rollback()
        except duckdb.Error:
            pass  # the transaction may already be aborted; nothing of it was committed
        if isinstance(error, (duckdb.Error, OSError)):
            raise write_error(self.path, error) from None


@contextlib.contextmanager
def noting_interrupts() -> Iterator[list[int]]:
    """Ctrl-C (SIGINT) and SIGTERM (`docker stop`) raise KeyboardInterrupt, and are noted in the list yielded.

    DuckDB turns a KeyboardInterrupt raised inside a query into an error of its own ("Query interrupted", or an
    aborted transaction on the next statement), which a reader may take for a table that is not there: the note
    lets the caller report an interrupt as one. A signal the process was started ignoring stays ignored (a job
    run in the background of a script); outside the main thread nothing is installed.
    """
    noted: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)
        raise KeyboardInterrupt

    previous: dict[int, object] = {}
    with contextlib.suppress(ValueError):  # not the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
    try:
        yield noted
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)  # type: ignore[arg-type]
