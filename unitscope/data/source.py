"""What a reader reads through (a Source), and the one rule for "read what publication stored, else compute it".

A Source is a read-only DuckDB cursor with a cache that lives as long as the DB file it reads: the
server's is app.data.db.Reader (one per request, its cache shared across requests and keyed by the
file's generation), the Python API's is ConnectionSource (its cache is its own, so one DB). Readers
pass their own keys and never build the DB's identity into them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import duckdb
import numpy as np

from unitscope import schema
from unitscope.cache import LruCache
from unitscope.errors import Unavailable

T = TypeVar("T")


class Source(Protocol):
    """A read-only view of one version of a DB, with its cache."""

    def rows(self, sql: str, params: Mapping[str, object] | None = None) -> list[tuple[Any, ...]]:
        """Run one query with bound parameters and return all rows."""

    def arrays(self, sql: str, params: Mapping[str, object] | None = None) -> dict[str, np.ndarray]:
        """Run one query with bound parameters and return its columns as numpy arrays, by name."""

    def cached(self, key: Hashable, compute: Callable[[], T], *, keep: bool = False) -> T:
        """compute()'s value for this DB version, computed once across threads.

        keep: small things kept for the life of the DB version (the runs, an image index); otherwise
        a bounded least-recently-used store.
        """

    def heavy(self, work: Callable[[], T], *, estimate: int) -> T:
        """work(), a computation over every response of a layer holding about `estimate` bytes: the server runs
        it in a bounded pool (app.heavy), the Python API at once."""

    def matrix(self, key: Hashable, read: Callable[[], np.ndarray]) -> np.ndarray:
        """A large array (a layer's responses) read at most once while this Source answers one request, and
        not kept beyond it."""


def stored_or_computed(stored: Callable[[], T | None], compute: Callable[[], T]) -> tuple[T, bool]:
    """(value, whether it was stored): what publication stored when it holds it, else compute()'s.

    Every reader that has a stored table decides through this one function: `stored` returns None
    when the DB lacks the rows (an older DB, or parameters other than the stored ones).
    """
    value = stored()
    if value is not None:
        return value, True
    return compute(), False


ALIAS = "unitscope"
# The tables without which a file is no unitscope DB (older DBs may lack later ones: readers check).
REQUIRED_TABLES = frozenset({schema.META, schema.RUNS, schema.IMAGES, schema.RESPONSES, schema.LAYERS_TABLE})


Identity = tuple[int, int, int, int]  # (device, inode, mtime_ns, size)


def file_identity(path: Path) -> Identity | None:
    """The file at `path` now, None when there is none: the worker publishes by renaming a new file over the old, so a
    reader that kept the identity it opened knows when it reads a superseded file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


# Every DuckDB file starts with a checksum (8 bytes) and then these four.
DUCKDB_MAGIC, DUCKDB_MAGIC_AT = b"DUCK", 8


def is_duckdb_file(path: Path) -> bool:
    """Whether the file starts as every DuckDB file does (True when it cannot be read: DuckDB then says why)."""
    try:
        with path.open("rb") as f:
            head = f.read(DUCKDB_MAGIC_AT + len(DUCKDB_MAGIC))
    except OSError:
        return True  # unreadable: let DuckDB say why
    return head[DUCKDB_MAGIC_AT:] == DUCKDB_MAGIC


def open_read_only(path: Path, *, memory_limit: str = "1GB", threads: int = 2,
                   sandboxed: bool = True) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a unitscope DB, or Unavailable saying why not (not one, another schema version).

    sandboxed (the server's): no SQL on it may read or write another file or change the limits. The Python API's
    user owns the machine and saves relations with .write_parquet: not sandboxed (the DB stays read-only).

    Why `ATTACH ... (READ_ONLY)` into a private in-memory instance instead of
    `duckdb.connect(path, read_only=True)`: DuckDB caches database instances by path inside a
    process, so a second connect to the same path while the old file is still open returns the
    *old* file's data. A fresh in-memory instance never hits that cache.
    """
    # DuckDB's own errors for these are IOExceptions that name neither the cause nor unitscope: say both.
    if not Path(path).exists():
        raise Unavailable(f"no database file at {path}")
    if not Path(path).is_file():
        raise Unavailable(f"{path} is not a file: a unitscope database is one DuckDB file")
    if not is_duckdb_file(Path(path)):  # junk, a Parquet or CSV file: DuckDB's own message would not say so
        raise Unavailable(f"{path} is not a DuckDB file, so not a unitscope database")
    con = duckdb.connect(":memory:", config={"memory_limit": memory_limit, "threads": threads})
    try:
        try:
            con.execute(f"ATTACH ? AS {ALIAS} (READ_ONLY)", [str(path)])
        except duckdb.Error as exc:  # a storage version this DuckDB cannot read, a damaged file, a lock held
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise Unavailable(f"cannot open {path} as a unitscope database: {type(exc).__name__}: {first}") from exc
        if sandboxed:  # defence in depth: no SQL run here may touch another file or change the limits
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        con.execute(f"USE {ALIAS}")
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = ?",
                                            [ALIAS]).fetchall()}
        missing = REQUIRED_TABLES - tables
        if missing:
            raise Unavailable(f"{path} is not a unitscope database (missing {sorted(missing)})")
        # Every DB the worker writes stamps its version: a file without one is no DB of ours, whatever tables it has.
        rows = con.execute(f"SELECT value FROM {schema.META} WHERE key = 'schema_version'").fetchall()
        if not rows:
            raise Unavailable(f"{path} has no schema version: not a database written by the worker")
        if str(rows[0][0]) != str(schema.SCHEMA_VERSION):
            older = str(rows[0][0]).isdigit() and int(rows[0][0]) < schema.SCHEMA_VERSION
            hint = "; `python -m worker derive --db FILE` upgrades it" if older else ""
            raise Unavailable(f"database schema version {rows[0][0]}, this version reads {schema.SCHEMA_VERSION}{hint}")
    except BaseException:
        con.close()
        raise
    return con


class ConnectionSource:
    """A Source over one connection of open_read_only (the Python API's), or over the worker's publishing connection
    (database=None), so that publication reads with the server's readers: its cache lives as long as the object."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, cache_size: int = 256,
                 database: str | None = ALIAS) -> None:
        self.connection = connection
        self._cursor = connection.cursor()  # a cursor does not inherit the connection's USE
        if database is not None:  # None: the connection's own file (the worker's publishing connection)
            self._cursor.execute(f"USE {database}")
        self._lock = threading.Lock()  # one cursor: a query and its fetch must not interleave with another's
        self._kept: LruCache[Any] = LruCache(None)
        self._results: LruCache[Any] = LruCache(cache_size)

    def rows(self, sql: str, params: Mapping[str, object] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._cursor.execute(sql, dict(params or {})).fetchall()

    def arrays(self, sql: str, params: Mapping[str, object] | None = None) -> dict[str, np.ndarray]:
        with self._lock:
            return self._cursor.execute(sql, dict(params or {})).fetchnumpy()

    def cached(self, key: Hashable, compute: Callable[[], T], *, keep: bool = False) -> T:
        return (self._kept if keep else self._results).get_or_compute(key, compute)

    def heavy(self, work: Callable[[], T], *, estimate: int) -> T:
        return work()  # a notebook waits for what it asked

    def matrix(self, key: Hashable, read: Callable[[], np.ndarray]) -> np.ndarray:
        return read()  # a notebook keeps what it wants; the API holds no layer's matrix
