"""Read-only access to the worker's DuckDB file, reopened when the worker publishes a new one.

The worker publishes by `os.replace` of the whole file. Each request stats the path; when its
identity (device, inode, mtime, size) changed, a new *generation* is opened and later requests
use it, while requests in flight finish on the old one, which is closed once they are done
(the old inode stays readable until then).

Why `ATTACH ... (READ_ONLY)` into a private in-memory instance instead of
`duckdb.connect(path, read_only=True)`: DuckDB caches database instances by path inside a
process, so a second connect to the same path while the old file is still open returns the
*old* file's data. A fresh in-memory instance per generation never hits that cache.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np

from app.cache import LruCache
from app.config import Settings
from app.problems import Unavailable
from worker import schema

T = TypeVar("T")

log = logging.getLogger("app.db")

Identity = tuple[int, int, int, int]
_ALIAS = "unitscope"
# Failures that mean "the database cannot answer now", not a bug in a query.
# Rendered responses kept (app.twin): a layer page is ~0.5 MB, a unit page ~0.1 MB.
BODY_CACHE_SIZE = 256
_UNAVAILABLE = (duckdb.OutOfMemoryException, duckdb.IOException, duckdb.InterruptException)


def _identity(path: Path) -> Identity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


@dataclass(eq=False)
class Generation:
    """One opened version of the DB file, with memos of what never changes inside it."""

    identity: Identity
    connection: duckdb.DuckDBPyConnection
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _active: int = 0
    _retired: bool = False
    _memos: LruCache[Any] = field(default_factory=lambda: LruCache(None))

    def try_acquire(self) -> bool:
        """Count a request using this generation; False if it was retired (and maybe closed)."""
        with self._lock:
            if self._retired:
                return False
            self._active += 1
            return True

    def release(self) -> None:
        """A request is done; close the connection if it was the last one on a retired file."""
        with self._lock:
            self._active -= 1
            close = self._retired and self._active == 0
        if close:
            self.connection.close()

    def retire(self) -> None:
        """No new requests will come; close now if none is in flight."""
        with self._lock:
            self._retired = True
            close = self._active == 0
        if close:
            self.connection.close()

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """compute()'s value, computed once for the life of this generation (small things only).

        Concurrent callers of one key wait for the first instead of each computing it: at the
        study's scale a run's image index takes seconds, and 32 clients arriving at once on a fresh
        server would otherwise each build it.
        """
        return self._memos.get_or_compute(key, compute)


@dataclass(frozen=True)
class Caches:
    """Results kept across requests, each keyed by the DB generation so a new file never sees old ones."""

    scores: LruCache  # halves of a layer's scores: SI per (category, stat), counts per (category, k, stats)
    units: LruCache  # a unit page's context for one parameter set
    bodies: LruCache  # a page's or JSON twin's response, by URL (app.twin)


class Reader:
    """One request's cursor on one generation."""

    def __init__(self, generation: Generation, cursor: duckdb.DuckDBPyConnection, caches: Caches) -> None:
        self.generation = generation
        self.cursor = cursor
        self.caches = caches
        # What one request reads once and several of its parts use (e.g. a layer's response matrices);
        # gone with the request, unlike the caches.
        self.memo: dict[object, Any] = {}

    def rows(self, sql: str, params: Mapping[str, object] | None = None) -> list[tuple[Any, ...]]:
        """Run one query with bound parameters and return all rows."""
        with self._answering():
            return self.cursor.execute(sql, dict(params or {})).fetchall()

    def arrays(self, sql: str, params: Mapping[str, object] | None = None) -> dict[str, Any]:
        """Run one query with bound parameters and return its columns as numpy arrays, by name."""
        with self._answering():
            return self.cursor.execute(sql, dict(params or {})).fetchnumpy()

    @contextmanager
    def _answering(self) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as exc:
            log.warning("query failed: %s", exc)
            raise Unavailable(f"the database could not answer: {type(exc).__name__}") from exc

    def columns(self, sql: str, params: Mapping[str, object] | None = None) -> dict[str, np.ndarray]:
        """Run one query with bound parameters and return its result as numpy columns (for many rows)."""
        try:
            return self.cursor.execute(sql, dict(params or {})).fetchnumpy()
        except _UNAVAILABLE as exc:
            log.warning("query failed: %s", exc)
            raise Unavailable(f"the database could not answer: {type(exc).__name__}") from exc


class Database:
    """The DB file as the server sees it: always the newest readable version."""

    def __init__(self, settings: Settings) -> None:
        self.path = Path(settings.db)
        self.settings = settings
        self.caches = Caches(scores=LruCache(settings.score_cache_size), units=LruCache(settings.unit_cache_size),
                             bodies=LruCache(BODY_CACHE_SIZE))
        self._lock = threading.Lock()
        self._current: Generation | None = None
        self._failed: Identity | None = None

    def _open(self, identity: Identity) -> Generation:
        con = duckdb.connect(
            ":memory:",
            config={"memory_limit": self.settings.memory_limit, "threads": self.settings.db_threads},
        )
        try:
            con.execute(f"ATTACH ? AS {_ALIAS} (READ_ONLY)", [str(self.path)])
            # Defence in depth: no SQL run here may touch another file or change the limits.
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            con.execute(f"USE {_ALIAS}")
            tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = ?",
                                                [_ALIAS]).fetchall()}
            missing = {schema.RUNS, schema.IMAGES, schema.RESPONSES, schema.LAYERS_TABLE} - tables
            if missing:
                raise Unavailable(f"{self.path.name} is not a unitscope database (missing {sorted(missing)})")
            if schema.META in tables:
                row = con.execute(f"SELECT value FROM {schema.META} WHERE key = 'schema_version'").fetchone()
                if row is not None and str(row[0]) != str(schema.SCHEMA_VERSION):
                    raise Unavailable(f"database schema version {row[0]}, this server reads {schema.SCHEMA_VERSION}")
        except BaseException:
            con.close()
            raise
        log.info("opened %s (inode %s)", self.path, identity[1])
        return Generation(identity=identity, connection=con)

    def generation(self) -> Generation:
        """The generation for the file at the path now, opening it if it changed."""
        identity = _identity(self.path)
        current = self._current
        if current is not None and (identity == current.identity or identity is None):
            # Same file, or the path vanished for a moment: keep serving what we have.
            return current
        with self._lock:
            current = self._current
            if current is not None and identity == current.identity:
                return current
            if identity is None:
                raise Unavailable(f"no database file at {self.path.name}")
            if identity == self._failed and current is not None:
                return current
            try:
                fresh = self._open(identity)
            except (duckdb.Error, Unavailable) as exc:
                self._failed = identity
                detail = str(exc) if isinstance(exc, Unavailable) else f"{type(exc).__name__}: {exc}"
                if current is not None:
                    log.warning("keeping the previous database: cannot open the new one: %s", detail)
                    return current
                raise Unavailable(f"cannot open the database: {detail}") from exc
            self._current = fresh
            self._failed = None
        if current is not None:
            current.retire()
        return fresh

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        """A cursor on the newest generation for the length of one request."""
        gen = self.generation()
        while not gen.try_acquire():
            gen = self.generation()  # retired between lookup and acquire: take the newer one
        cursor = None
        try:
            cursor = gen.connection.cursor()
            cursor.execute(f"USE {_ALIAS}")
            yield Reader(gen, cursor, self.caches)
        finally:
            if cursor is not None:
                cursor.close()
            gen.release()

    def close(self) -> None:
        """Close the current generation (at shutdown)."""
        with self._lock:
            current, self._current = self._current, None
        if current is not None:
            current.retire()

