"""DuckDB writes: a locked private working file per run, one transaction per batch, atomic publication.

Files beside the published DB `<db>`:
- `<db>.lock`: held (POSIX lockf) by the one worker allowed to write this DB.
- `<db>.partial` (+ DuckDB's `.wal`): the run in progress: its runs row (status 'running'), images,
  skipped files and responses_staging rows. Each batch is one transaction, so after kill -9 the
  file holds whole batches only, and rerunning the same command resumes from there.
- `<db>.publishing`: built at the end of a run in a fresh file: the published runs of `<db>`, then
  the new run with its responses sorted by (layer, unit, image_id), its SI for every stat and
  category, and its in_top/in_bottom for the default parameters.
  It is checkpointed, closed and fsynced, then renamed over `<db>` (atomic), so a reader of `<db>`
  only ever sees complete runs. A fresh file is written, rather than the working file published,
  because deleting the staging rows in place leaves their blocks in the file (measured: 2.2x the
  size of a freshly written copy).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import duckdb
import numpy as np

from worker import schema
from worker.categories import Category


class StoreError(RuntimeError):
    """The DB cannot be opened, locked or written; the message names the file and what to do."""


@dataclass(frozen=True)
class LayerInfo:
    """A layer of the run as stored in `layers` and `units`."""

    name: str
    units: int
    module: str  # the model's own name for the layer
    branches: tuple[str, ...]  # branch name of every unit, by unit index

    @property
    def position(self) -> int:
        """Depth order, 0 = conv1."""
        return schema.LAYERS.index(self.name)


@dataclass(frozen=True)
class RunSpec:
    """What a run computes; everything in config_hash must match for a rerun to resume it."""

    model: str
    weights: str
    weights_sha256: str
    preprocessing: str  # canonical JSON
    images_root: str  # absolute
    files: tuple[str, ...]  # relative paths; position = image id / file id
    layers: tuple[LayerInfo, ...]
    categories: tuple[Category, ...]
    device: str
    dtype: str = "float32"

    def config_hash(self) -> str:
        """sha256 over everything that determines the stored values (not the device or batch size)."""
        config = {
            "schema_version": schema.SCHEMA_VERSION,
            "images_root": self.images_root,
            "files": list(self.files),
            "model": self.model,
            "weights_sha256": self.weights_sha256,
            "preprocessing": self.preprocessing,
            "layers": [layer.name for layer in self.layers],
            "categories": {c.name: list(c.wnids) for c in self.categories},
            "dtype": self.dtype,
        }
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ImageRow:
    """One decoded image, as stored in `images`."""

    image_id: int
    path: str
    wnid: str
    class_index: int | None
    class_name: str
    width: int
    height: int
    mode: str


@dataclass(frozen=True)
class Progress:
    """Where a run stands in the working file."""

    config_hash: str
    done: frozenset[int]  # file ids already stored as images or skipped
    resumed: bool


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
    schema.SKIPPED,
    schema.RESPONSES,
    schema.UNIT_SI,
    schema.UNIT_RANKS,
)


def _now() -> datetime:
    """Timestamps are stored as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    query = "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    return {row[0] for row in con.execute(query).fetchall()}


def _check_version(con: duckdb.DuckDBPyConnection, where: Path) -> bool:
    """Refuse a DuckDB file that is not a unitscope DB of this schema version; False if it is empty."""
    tables = _tables(con)
    if not tables:
        return False
    if schema.META not in tables:
        raise StoreError(
            f"{where} is a DuckDB file but not a unitscope DB (no '{schema.META}' table); use another --db"
        )
    row = con.execute(f"SELECT value FROM {schema.META} WHERE key = 'schema_version'").fetchone()
    if row is None or row[0] != str(schema.SCHEMA_VERSION):
        found = row[0] if row else "unknown"
        raise StoreError(
            f"{where} has schema version {found}, this worker writes version {schema.SCHEMA_VERSION}; use another --db"
        )
    return True


def _init_schema(con: duckdb.DuckDBPyConnection, where: Path) -> None:
    """Create the tables in a new file and stamp the schema version, or check an existing file's."""
    if _check_version(con, where):
        return
    for ddl in schema.DDL:
        con.execute(ddl)
    con.execute(f"INSERT INTO {schema.META} VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)])


class WorkerStore:
    """The writer side of one DB path. Use `WorkerStore.open(db)` as a context manager."""

    def __init__(self, db: Path, memory_limit: str | None = None) -> None:
        self.db = Path(os.path.abspath(db))
        # The publish sorts a whole layer (293 M rows for mixed5b at the study's scale): with a limit,
        # DuckDB spills it to disk instead of taking most of the machine's memory.
        self._config = {"memory_limit": memory_limit} if memory_limit else {}
        self.partial = self.db.with_name(self.db.name + ".partial")
        self.partial_wal = self.db.with_name(self.db.name + ".partial.wal")
        self.publishing = self.db.with_name(self.db.name + ".publishing")
        self.lock_path = self.db.with_name(self.db.name + ".lock")
        self._lock_fd: int | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._run_id = 1  # the working file holds one run; its final id is chosen when published

    # ---------------------------------------------------------------- opening, locking, closing

    @classmethod
    def open(cls, db: Path, *, memory_limit: str | None = None) -> WorkerStore:
        """Check the DB's folder, take the lock, and check an existing DB is a unitscope DB."""
        store = cls(db, memory_limit)
        store._check_location()
        store._acquire_lock()
        try:
            if store.db.exists():
                with store._read_published() as con:
                    if not _check_version(con, store.db):
                        raise StoreError(f"{store.db} is an empty DuckDB file, not a unitscope DB; use another --db")
        except BaseException:
            store.close()
            raise
        return store

    def _check_location(self) -> None:
        folder = self.db.parent
        if not folder.is_dir():
            raise StoreError(f"cannot create {self.db}: folder {folder} does not exist")
        if self.db.is_dir():
            raise StoreError(f"--db {self.db} is a folder; give a file path such as {self.db / 'unitscope.duckdb'}")

    def _acquire_lock(self) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(
                f"cannot write in {self.db.parent} ({exc.strerror}): the DB's folder must be writable"
            ) from None
        try:
            # lockf (POSIX) rather than flock: it is not inherited by the DataLoader's forked
            # decoding processes, so it is released the moment this process dies, even by kill -9.
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise StoreError(
                    f"another worker (pid {holder}) is writing {self.db}; wait for it to finish or use another --db"
                ) from None
            raise StoreError(f"cannot lock {self.lock_path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def close(self) -> None:
        """Close the working file (kept for a resume) and release the lock."""
        if self._con is not None:
            try:
                self._con.close()
            finally:
                self._con = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lockf lock
            self._lock_fd = None

    def __enter__(self) -> WorkerStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _read_published(self) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(str(self.db), read_only=True)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open {self.db} as a DuckDB file: {_first_line(exc)}") from None

    # ---------------------------------------------------------------- published runs

    def find_published(self, config_hash: str) -> int | None:
        """The id of a complete run with this configuration in `<db>`, if any."""
        if not self.db.exists():
            return None
        with self._read_published() as con:
            row = con.execute(
                f"SELECT max(run_id) FROM {schema.RUNS} WHERE config_hash = ? AND status = ?",
                [config_hash, schema.RUN_COMPLETE],
            ).fetchone()
        return None if row is None else row[0]

    def discard_partial(self) -> None:
        """Delete the working file: an unfinished run is dropped (the published DB is untouched)."""
        self._close_work()
        _remove(self.partial, self.partial_wal, self.publishing)

    def partial_hash(self) -> str | None:
        """config_hash of the run in the working file, if there is one."""
        if not self.partial.exists():
            return None
        row = self._work().execute(f"SELECT config_hash FROM {schema.RUNS}").fetchone()
        return None if row is None else row[0]

    # ---------------------------------------------------------------- the working file

    def _work(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            try:
                con = duckdb.connect(str(self.partial), config=self._config)
            except duckdb.Error as exc:
                raise StoreError(
                    f"cannot open the working file {self.partial}: {_first_line(exc)}; pass --restart to discard it"
                ) from None
            try:
                _init_schema(con, self.partial)
            except BaseException:
                con.close()
                raise
            self._con = con
        return self._con

    def _close_work(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def begin(self, spec: RunSpec) -> Progress:
        """Start the run in the working file, or find it there and report which files are done."""
        config_hash = spec.config_hash()
        con = self._work()
        row = con.execute(f"SELECT config_hash, model, images_root, n_files, started_at FROM {schema.RUNS}").fetchone()
        if row is not None:
            if row[0] != config_hash:
                raise StoreError(
                    f"{self.partial} holds an unfinished run with a different configuration "
                    f"({row[1]} on {row[3]} files of {row[2]}, started {row[4]:%Y-%m-%d %H:%M} UTC); "
                    "rerun that command to finish it, or pass --restart to discard it"
                )
            done = {r[0] for r in con.execute(f"SELECT image_id FROM {schema.IMAGES}").fetchall()}
            done |= {r[0] for r in con.execute(f"SELECT file_id FROM {schema.SKIPPED}").fetchall()}
            return Progress(config_hash, frozenset(done), resumed=True)
        with self._transaction():
            con.execute(
                f"INSERT INTO {schema.RUNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                [
                    self._run_id, schema.RUN_RUNNING, config_hash, spec.model, spec.weights,
                    spec.weights_sha256, spec.preprocessing, spec.images_root, len(spec.files),
                    spec.device, spec.dtype, _now(),
                ],
            )  # fmt: skip
            layers = {
                "layer": np.array([layer.name for layer in spec.layers], dtype=object),
                "position": np.array([layer.position for layer in spec.layers], dtype=np.int16),
                "units": np.array([layer.units for layer in spec.layers], dtype=np.int16),
                "module": np.array([layer.module for layer in spec.layers], dtype=object),
            }
            sql = f"INSERT INTO {schema.LAYERS_TABLE} SELECT $run_id, layer, position, units, module FROM {FRAME}"
            _insert(con, sql, layers, {"run_id": self._run_id})
            units = {
                "layer": np.array([layer.name for layer in spec.layers for _ in layer.branches], dtype=object),
                "unit": np.concatenate([np.arange(layer.units, dtype=np.int16) for layer in spec.layers]),
                "branch": np.array([b for layer in spec.layers for b in layer.branches], dtype=object),
            }
            _insert(
                con,
                f"INSERT INTO {schema.UNITS} SELECT $run_id, layer, unit, branch FROM {FRAME}",
                units,
                {"run_id": self._run_id},
            )
            members = {
                "category": np.array([c.name for c in spec.categories for _ in c.wnids], dtype=object),
                "wnid": np.array([w for c in spec.categories for w in c.wnids], dtype=object),
            }
            _insert(
                con,
                f"INSERT INTO {schema.CATEGORIES} SELECT $run_id, category, wnid FROM {FRAME}",
                members,
                {"run_id": self._run_id},
            )
        return Progress(config_hash, frozenset(), resumed=False)

    def write_batch(
        self,
        images: Sequence[ImageRow],
        skipped: Iterable[tuple[int, str, str]],
        responses: Mapping[str, np.ndarray],
    ) -> None:
        """Store one batch in one transaction: its images, its skipped files (file id, path, reason)
        and its responses ({layer: float32 [len(images), units, 3] (mean, max, min)})."""
        con = self._work()
        skipped = list(skipped)
        with self._transaction():
            if images:
                rows = {
                    "image_id": np.array([r.image_id for r in images], dtype=np.int32),
                    "path": np.array([r.path for r in images], dtype=object),
                    "wnid": np.array([r.wnid for r in images], dtype=object),
                    "class_index": np.array([r.class_index for r in images], dtype=object),
                    "class_name": np.array([r.class_name for r in images], dtype=object),
                    "width": np.array([r.width for r in images], dtype=np.int32),
                    "height": np.array([r.height for r in images], dtype=np.int32),
                    "mode": np.array([r.mode for r in images], dtype=object),
                }
                _insert(
                    con,
                    f"INSERT INTO {schema.IMAGES} SELECT $run_id, image_id, path, wnid, class_index, "
                    f"class_name, width, height, mode FROM {FRAME}",
                    rows,
                    {"run_id": self._run_id},
                )
                ids = rows["image_id"]
                for layer, stats in responses.items():
                    n, units, _ = stats.shape
                    if n != len(ids):
                        raise ValueError(f"{layer}: {n} response rows for {len(ids)} images")
                    flat = np.ascontiguousarray(stats, dtype=np.float32).reshape(n * units, 3)
                    frame = {
                        "unit": np.tile(np.arange(units, dtype=np.int16), n),
                        "image_id": np.repeat(ids, units),
                        "act_mean": flat[:, 0],
                        "act_max": flat[:, 1],
                        "act_min": flat[:, 2],
                    }
                    _insert(
                        con,
                        f"INSERT INTO {schema.STAGING} SELECT $run_id, $layer, unit, image_id, "
                        f"act_mean, act_max, act_min FROM {FRAME}",
                        frame,
                        {"run_id": self._run_id, "layer": layer},
                    )
            if skipped:
                bad = {
                    "file_id": np.array([s[0] for s in skipped], dtype=np.int32),
                    "path": np.array([s[1] for s in skipped], dtype=object),
                    "reason": np.array([s[2] for s in skipped], dtype=object),
                }
                _insert(
                    con,
                    f"INSERT INTO {schema.SKIPPED} SELECT $run_id, file_id, path, reason FROM {FRAME}",
                    bad,
                    {"run_id": self._run_id},
                )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._work(), self.partial)

    # ---------------------------------------------------------------- publication

    def publish(self, *, ranked_k: int = schema.RANKED_K) -> Published:
        """Write `<db>.publishing` (published runs + this run, sorted, with SI and ranks),
        make it durable, rename it over `<db>`, and delete the working file.

        ranked_k: how many images of each unit to rank on each side of every stat (tests lower it).
        """
        con = self._work()
        n_files, n_images, n_skipped = con.execute(
            f"SELECT n_files, (SELECT count(*) FROM {schema.IMAGES}), (SELECT count(*) FROM {schema.SKIPPED}) "
            f"FROM {schema.RUNS}"
        ).fetchone()
        if n_images + n_skipped != n_files:
            raise StoreError(f"run is unfinished: {n_images + n_skipped} of {n_files} files stored")
        try:
            con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            raise _write_error(self.partial, exc) from None
        self._close_work()
        _remove(self.publishing, self.publishing.with_name(self.publishing.name + ".wal"))
        try:
            run_id = self._build_published(ranked_k)
            _fsync(self.publishing)
            os.replace(self.publishing, self.db)
            _fsync(self.db.parent)
        except (duckdb.Error, OSError) as exc:
            _remove(self.publishing)
            raise _write_error(self.publishing, exc) from None
        _remove(self.partial, self.partial_wal)
        with self._read_published() as pub:
            responses, values = pub.execute(
                f"SELECT count(*) FILTER (WHERE run_id = ?), count(*) * 3 FROM {schema.RESPONSES}", [run_id]
            ).fetchone()
        return Published(run_id, n_images, n_skipped, responses, self.db.stat().st_size, values)

    def _build_published(self, ranked_k: int) -> int:
        """Fill the fresh `<db>.publishing` file; returns the new run's id.

        No transaction is needed here: nobody else sees this file until it is renamed over `<db>`,
        and a crash before that leaves `<db>` as it was. Responses go in one sorted INSERT per
        layer with a CHECKPOINT after each, so the file ends up with no free blocks.
        """
        with duckdb.connect(str(self.publishing), config=self._config) as pub:
            _init_schema(pub, self.publishing)
            if self.db.exists():
                pub.execute(f"ATTACH '{_sql_str(self.db)}' AS old (READ_ONLY)")
                for table in _PUBLISHED_TABLES:
                    pub.execute(f"INSERT INTO {table} BY NAME SELECT * FROM old.{table}")
                pub.execute("DETACH old")
                pub.execute("CHECKPOINT")
            run_id = pub.execute(f"SELECT coalesce(max(run_id), 0) + 1 FROM {schema.RUNS}").fetchone()[0]
            pub.execute(f"ATTACH '{_sql_str(self.partial)}' AS work (READ_ONLY)")
            p = {"new": run_id}
            pub.execute(
                f"INSERT INTO {schema.RUNS} BY NAME SELECT * REPLACE ($new AS run_id, "
                f"'{schema.RUN_COMPLETE}' AS status, $finished AS finished_at) FROM work.{schema.RUNS}",
                {**p, "finished": _now()},
            )
            for table, order in ((schema.LAYERS_TABLE, "position"), (schema.UNITS, "layer, unit"),
                                 (schema.CATEGORIES, "category, wnid"), (schema.IMAGES, "image_id"),
                                 (schema.SKIPPED, "file_id")):  # fmt: skip
                pub.execute(
                    f"INSERT INTO {table} BY NAME SELECT * REPLACE ($new AS run_id) FROM work.{table} ORDER BY {order}",
                    p,
                )
            layers = [r[0] for r in pub.execute(
                f"SELECT layer FROM {schema.LAYERS_TABLE} WHERE run_id = $new ORDER BY position", p
            ).fetchall()]  # fmt: skip
            categories = [r[0] for r in pub.execute(
                f"SELECT DISTINCT category FROM {schema.CATEGORIES} WHERE run_id = $new ORDER BY 1", p
            ).fetchall()]  # fmt: skip
            for layer in layers:
                # One layer at a time keeps each sort small (the study's 286k images would be 1.7
                # billion rows at once); the table ends up in (layer, unit, image_id) order.
                pub.execute(
                    f"INSERT INTO {schema.RESPONSES} SELECT $new, layer, unit, image_id, act_mean, act_max, act_min "
                    f"FROM work.{schema.STAGING} WHERE layer = $layer ORDER BY unit, image_id",
                    {**p, "layer": layer},
                )
                pub.execute("CHECKPOINT")
            pub.execute("DETACH work")
            # The same SQL the server runs: SI for every stat and category, and each unit's first
            # RANKED_K images on both sides of every stat (in_top/in_bottom for any k up to it).
            for layer in layers:
                for category in categories:
                    pub.execute(
                        f"INSERT INTO {schema.UNIT_SI} SELECT $run_id, $layer, $category, stat, unit, si "
                        f"FROM ({schema.si_sql()})",
                        {"run_id": run_id, "layer": layer, "category": category},
                    )
                insert_ranks(pub, run_id, layer, ranked_k)
            pub.execute("CHECKPOINT")
        return run_id


def insert_ranks(con: duckdb.DuckDBPyConnection, run_id: int, layer: str, ranked_k: int) -> None:
    """Store each unit's first `ranked_k` images of `layer` from both sides of every stat."""
    for stat in schema.STATS:
        for side in schema.SIDES:
            con.execute(
                f"INSERT INTO {schema.UNIT_RANKS} SELECT $run_id, $layer, $stat, $side, unit, rank, image_id "
                f"FROM ({schema.ranks_sql(stat, side)}) ORDER BY unit, rank",
                {"run_id": run_id, "layer": layer, "stat": stat, "side": side, "k": ranked_k},
            )


class _Transaction:
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
            raise _write_error(self.path, error) from None


FRAME = "_unitscope_frame"  # name a batch of numpy columns is registered under for one INSERT


def _insert(
    con: duckdb.DuckDBPyConnection, sql: str, frame: Mapping[str, np.ndarray], params: Mapping[str, object]
) -> None:
    """Run `sql`, which reads the numpy columns `frame` as the relation FRAME, in one bulk insert."""
    con.register(FRAME, dict(frame))
    try:
        con.execute(sql, dict(params))
    finally:
        con.unregister(FRAME)


def _write_error(path: Path, exc: BaseException) -> StoreError:
    return StoreError(
        f"cannot write {path}: {_first_line(exc)} (disk full or read-only?); the published DB is "
        "unchanged, and rerunning the same command resumes from the last stored batch"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _sql_str(path: Path) -> str:
    """A path as the body of a single-quoted SQL string literal."""
    return str(path).replace("'", "''")
