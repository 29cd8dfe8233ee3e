"""The server's read-only access to the worker's DuckDB file, reopened when the worker publishes a new one,
and its one cache, keyed by the file's generation.

The worker publishes by `os.replace` of the whole file. Each request stats the path; when its
identity (device, inode, mtime, size) changed, a new *generation* is opened and later requests
use it, while requests in flight finish on the old one, which is closed once they are done
(the old inode stays readable until then).

The connection itself is unitscope.data.source.open_read_only's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np

from app import heavy
from app.config import Settings
from unitscope.cache import LruCache
from unitscope.data.source import ALIAS, Identity, file_identity, open_read_only
from unitscope.errors import Unavailable

T = TypeVar("T")

log = logging.getLogger("app.data.db")

# Rendered responses kept (app.twin): a layer page is ~0.5 MB, a unit page ~0.1 MB.
BODY_CACHE_SIZE = 256
# Failures that mean "the database cannot answer now", not a bug in a query, and leave the file as good as it was.
_TRANSIENT = (duckdb.OutOfMemoryException, duckdb.InterruptException)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _without_path(text: str, path: Path) -> str:
    """`text` with the DB's folder left out: an error a client sees names the file, not where it lives."""
    for form in {str(path.resolve()), str(path.absolute()), str(path)}:
        text = text.replace(form, path.name)
    return text


@dataclass(eq=False)
class Generation:
    """One opened version of the DB file, with memos of what never changes inside it."""

    identity: Identity
    connection: duckdb.DuckDBPyConnection
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _active: int = 0
    _retired: bool = False
    # What is kept for the life of this file (runs, image index): small, and gone with the generation.
    kept: LruCache[Any] = field(default_factory=lambda: LruCache(None, on_wait=heavy.before_waiting))
    # Why the file cannot be read (a corrupted block, an I/O error), once a query met it; /healthz reports it.
    broken: str | None = None

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


class Cache:
    """The server's one cache: every key is prefixed with the DB generation here, so a new file never sees
    old entries and no caller builds the generation into a key.

    Three stores with their own bounds: what a generation keeps for its life (small things, dropped with
    it), computed results (layer scores, nulls, class profiles) and rendered responses (app.twin).
    """

    def __init__(self, results: int, bodies: int = BODY_CACHE_SIZE) -> None:
        # A request thread never waits long on another's computation: it moves to the heavy pool (app.heavy).
        self._results: LruCache[Any] = LruCache(results, on_wait=heavy.before_waiting)
        self._bodies: LruCache[Any] = LruCache(bodies, on_wait=heavy.before_waiting)

    def get(self, generation: Generation, key: Hashable, compute: Callable[[], T], *, keep: bool = False,
            body: bool = False) -> T:
        """compute()'s value for this generation and key, computed once across threads."""
        if keep:
            return generation.kept.get_or_compute(key, compute)
        store = self._bodies if body else self._results
        return store.get_or_compute((generation.identity, key), compute)


class Reader:
    """One request's cursor on one generation: a unitscope.data Source."""

    def __init__(self, generation: Generation, cursor: duckdb.DuckDBPyConnection, cache: Cache) -> None:
        self.generation = generation
        self.cursor = cursor
        self.cache = cache
        # Matrices that one request reads once and several of its parts use (a layer's responses); gone
        # with the request. Plain arrays, so nothing here points back at the Reader.
        self.matrices: dict[Hashable, np.ndarray] = {}

    def rows(self, sql: str, params: Mapping[str, object] | None = None) -> list[tuple[Any, ...]]:
        """Run one query with bound parameters and return all rows."""
        heavy.checkpoint()
        with self._answering():
            return self.cursor.execute(sql, dict(params or {})).fetchall()

    def arrays(self, sql: str, params: Mapping[str, object] | None = None) -> dict[str, Any]:
        """Run one query with bound parameters and return its columns as numpy arrays, by name."""
        heavy.checkpoint()
        with self._answering():
            return self.cursor.execute(sql, dict(params or {})).fetchnumpy()

    def cached(self, key: Hashable, compute: Callable[[], T], *, keep: bool = False) -> T:
        """compute()'s value for this DB generation (see Cache)."""
        return self.cache.get(self.generation, key, compute, keep=keep)

    def heavy(self, work: Callable[[], T], *, estimate: int) -> T:
        """work() in the heavy pool: on a request thread this raises app.heavy.HeavyNeeded."""
        return heavy.inline(work, estimate)

    def interrupt(self) -> None:
        """Stop this cursor's query in flight (from another thread)."""
        self.cursor.interrupt()

    def matrix(self, key: Hashable, read: Callable[[], np.ndarray]) -> np.ndarray:
        """A matrix read at most once per request."""
        if key not in self.matrices:
            self.matrices[key] = read()
        return self.matrices[key]

    @contextmanager
    def _answering(self) -> Iterator[None]:
        try:
            yield
        except duckdb.ProgrammingError:
            raise  # a query of ours is wrong (binder, parser, catalog): a bug, answered 500
        except _TRANSIENT as exc:
            log.warning("query failed: %s", exc)
            raise Unavailable(f"the database could not answer: {type(exc).__name__}") from exc
        except duckdb.Error as exc:
            # DuckDB checks every block's checksum as it reads it: a file damaged in place fails here, and stays
            # damaged until the worker publishes a new one.
            log.error("the database file cannot be read: %s", exc)
            self.generation.broken = f"{type(exc).__name__}: {_first_line(exc)}"
            raise Unavailable("the database file cannot be read (damaged?); publish it again") from exc


class Database:
    """The DB file as the server sees it: always the newest readable version."""

    def __init__(self, settings: Settings) -> None:
        self.path = Path(settings.db)
        self.settings = settings
        self.cache = Cache(settings.result_cache_size)
        self._lock = threading.Lock()
        self._current: Generation | None = None
        self._failed: Identity | None = None
        # Told, on the request that found it, when a newer file replaced the one served (app.warm reads it ahead).
        self.on_replace: Callable[[], None] | None = None

    def _open(self, identity: Identity) -> Generation:
        con = open_read_only(self.path, memory_limit=self.settings.memory_limit, threads=self.settings.db_threads)
        log.info("opened %s (inode %s)", self.path, identity[1])
        return Generation(identity=identity, connection=con)

    def generation(self) -> Generation:
        """The generation for the file at the path now, opening it if it changed."""
        identity = file_identity(self.path)
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
                detail = _without_path(str(exc) if isinstance(exc, Unavailable) else f"{type(exc).__name__}: "
                                                                                     f"{_first_line(exc)}", self.path)
                if current is not None:
                    log.warning("keeping the previous database: cannot open the new one: %s", detail)
                    return current
                raise Unavailable(f"cannot open the database: {detail}") from exc
            self._current = fresh
            self._failed = None
        if current is not None:
            current.retire()
            if self.on_replace is not None:
                self.on_replace()
        return fresh

    def serves(self, generation: Generation) -> bool:
        """Whether `generation` is the one new requests get."""
        return self._current is generation

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        """A cursor on the newest generation for the length of one request."""
        gen = self.generation()
        while not gen.try_acquire():
            gen = self.generation()  # retired between lookup and acquire: take the newer one
        cursor = None
        try:
            cursor = gen.connection.cursor()
            cursor.execute(f"USE {ALIAS}")
            yield Reader(gen, cursor, self.cache)
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

