"""The working file of a run: a private DuckDB file per run, one transaction per batch, resumable.

Files beside the published DB `<db>`:
- `<db>.lock`: held by the one worker allowed to write this DB (worker.lock).
- `<db>.partial` (+ DuckDB's `.wal`): the run in progress: its runs row (status 'running'), images,
  their image_stats, skipped files and staged_rows. Each batch is one transaction, so after kill -9 the
  file holds whole batches only, and rerunning the same command resumes from there. The rows
  themselves and their inserts are worker.run_rows'.
- `<db>.staged/`: the responses of the run in progress, raw arrays that a batch writes before it commits
  (worker.staged_arrays).
- `<db>.shard-<rank>-of-<world>`: under torchrun, the working file of each rank but 0, whose rows rank 0
  folds into `<db>.partial` (worker.shards); its responses stay in its own part of `<db>.staged/`.
- `<db>.publishing`: built from both at the end of a run and renamed over `<db>` (worker.publish).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import duckdb
import numpy as np

from unitscope import schema
from worker.db_files import (
    UPGRADABLE,
    StoreError,
    Transaction,
    check_version,
    first_line,
    init_schema,
    no_db,
    open_read_only,
    remove,
    wal_of,
    write_error,
)
from worker.lock import WriterLock
from worker.map_store import Maps, MapsTodo, insert_maps, maps_todo
from worker.publish import Published, publish_run, rederive
from worker.run_rows import ImageRow, RunSpec, insert_batch, insert_run
from worker.shards import Rank, fold_shards, shard_files, shard_path
from worker.staged_arrays import MAIN_PART, StagedArrays, staged_root

_OLD_STAGING = "responses_staging"  # where working files of schema 6 and before kept their responses


def _has_rows(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether `table` exists in the working file and has a row."""
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchone()[0]:
        return False
    return con.execute(f"SELECT count(*) > 0 FROM {table}").fetchone()[0]


@dataclass(frozen=True)
class Progress:
    """Where a run stands in the working file."""

    config_hash: str
    done: frozenset[int]  # file ids already stored as images or skipped
    resumed: bool


def _differences(con: duckdb.DuckDBPyConnection, spec: RunSpec) -> list[str]:
    """What a working file's unfinished run has that `spec` has not, as "what: stored, not given" (the run's own rows)."""
    model, sha, root, files = con.execute(
        f"SELECT model, weights_sha256, images_root, n_files FROM {schema.RUNS}").fetchone()
    layers = [r[0] for r in con.execute(f"SELECT layer FROM {schema.LAYERS_TABLE} ORDER BY position").fetchall()]
    categories = sorted({r[0] for r in con.execute(f"SELECT DISTINCT category FROM {schema.CATEGORIES}").fetchall()})
    given = {"model": (model, spec.model), "weights (sha256)": (sha[:12], spec.weights_sha256[:12]),
             "images": (root, spec.images_root), "files (--limit)": (files, len(spec.files)),
             "layers": (" ".join(layers), " ".join(layer.name for layer in spec.layers)),
             "categories": (" ".join(categories), " ".join(sorted(c.name for c in spec.categories)))}
    return [f"{what}: {stored}, now {now}" for what, (stored, now) in given.items() if stored != now]


class WorkerStore:
    """The writer side of one DB path. Use `WorkerStore.open(db)` as a context manager."""

    def __init__(self, db: Path, memory_limit: str | None = None, shard: Rank | None = None) -> None:
        self.db = Path(os.path.abspath(db))
        self.shard = shard  # a rank's store: its working file is its shard, and it takes no lock
        # The publish sorts a whole layer (293 M rows for mixed5b at the study's scale): with a limit,
        # DuckDB spills it to disk instead of taking most of the machine's memory.
        self._config = {"memory_limit": memory_limit} if memory_limit else {}
        self.partial = (self.db.with_name(self.db.name + ".partial") if shard is None
                        else shard_path(self.db, shard.rank, shard.world))  # fmt: skip
        self.partial_wal = wal_of(self.partial)
        self.publishing = self.db.with_name(self.db.name + ".publishing")
        self.lock_path = self.db.with_name(self.db.name + ".lock")
        self._lock: WriterLock | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._run_id = 1  # the working file holds one run; its final id is chosen when published
        self.staged = StagedArrays(staged_root(self.db))
        self._part, self._next_row = MAIN_PART, 0  # where the next batch's responses go (set by begin)

    # ---------------------------------------------------------------- opening, locking, closing

    @classmethod
    def open(cls, db: Path, *, memory_limit: str | None = None, upgrading: bool = False) -> WorkerStore:
        """Check the DB's folder, take the lock, and check an existing DB is a unitscope DB.

        upgrading: also accept the older schema versions `rederive` rewrites (db_files.UPGRADABLE).
        """
        store = cls(db, memory_limit)
        store._check_location()
        store._lock = WriterLock.acquire(store.lock_path, store.db)
        try:
            if store.db.exists():
                with open_read_only(store.db) as con:
                    accept = (schema.SCHEMA_VERSION, *UPGRADABLE) if upgrading else (schema.SCHEMA_VERSION,)
                    if not check_version(con, store.db, accept=accept):
                        raise StoreError(f"{store.db} is an empty DuckDB file, not a unitscope DB; use another --db")
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open_shard(cls, db: Path, rank: Rank, *, memory_limit: str | None = None) -> WorkerStore:
        """The store of a rank but 0 under torchrun: its shard only; the lock is rank 0's, for the whole run."""
        store = cls(db, memory_limit, rank)
        store._check_location()
        return store

    def _check_location(self) -> None:
        folder = self.db.parent
        if not folder.is_dir():
            what = f"{folder} is a file, not a folder" if folder.exists() else f"folder {folder} does not exist"
            raise StoreError(f"cannot create {self.db}: {what}")
        if self.db.is_dir():
            raise StoreError(f"--db {self.db} is a folder; give a file path such as {self.db / 'unitscope.duckdb'}")

    def close(self) -> None:
        """Close the working file (kept for a resume) and release the lock."""
        try:
            self.close_work()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> WorkerStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- published runs

    def find_published(self, config_hash: str) -> int | None:
        """The id of a complete run with this configuration in `<db>`, if any."""
        if not self.db.exists():
            return None
        with open_read_only(self.db) as con:
            row = con.execute(
                f"SELECT max(run_id) FROM {schema.RUNS} WHERE config_hash = ? AND status = ?",
                [config_hash, schema.RUN_COMPLETE],
            ).fetchone()
        return None if row is None else row[0]

    def discard_partial(self) -> None:
        """Delete the working file: an unfinished run is dropped (the published DB is untouched)."""
        self.close_work()
        shards = shard_files(self.db)
        remove(self.partial, self.partial_wal, self.publishing, *shards, *map(wal_of, shards))
        self.staged.remove()

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
                    f"cannot open the working file {self.partial}: {first_line(exc)}; pass --restart to discard it"
                ) from None
            try:
                init_schema(con, self.partial)
            except BaseException:
                con.close()
                raise
            self._con = con
        return self._con

    def close_work(self) -> None:
        """Close the working file (kept for a resume), keeping the lock."""
        if self._con is not None:
            try:
                self._con.close()
            finally:
                self._con = None

    def begin(self, spec: RunSpec) -> Progress:
        """Start the run in the working file, or find it there and report which files are done.

        The working file of a run (not a shard's) first takes in the shards of a distributed run.
        """
        config_hash = spec.config_hash()
        con = self._work()
        row = con.execute(f"SELECT config_hash, model, images_root, n_files, started_at FROM {schema.RUNS}").fetchone()
        if row is not None and row[0] != config_hash:
            differ = _differences(con, spec)
            raise StoreError(
                f"{self.partial} holds an unfinished run with a different configuration "
                f"({row[1]} on {row[3]} files of {row[2]}, started {row[4]:%Y-%m-%d %H:%M} UTC"
                f"{'; it differs in ' + '; '.join(differ) if differ else ''}); "
                "rerun that command to finish it, or pass --restart to discard it"
            )
        if _has_rows(con, _OLD_STAGING):
            raise StoreError(f"{self.partial} holds an unfinished run staged by an older unitscope; pass --restart "
                             "to discard it")
        if row is None:
            self._create(spec, config_hash)
        if self.shard is None:
            self.fold_shards()
        self._part, self._next_row = self._staged_part(con)
        done = {r[0] for r in con.execute(f"SELECT image_id FROM {schema.IMAGES}").fetchall()}
        done |= {r[0] for r in con.execute(f"SELECT file_id FROM {schema.SKIPPED}").fetchall()}
        return Progress(config_hash, frozenset(done), resumed=row is not None)

    def _staged_part(self, con: duckdb.DuckDBPyConnection) -> tuple[str, int]:
        """The part this working file writes its responses to, and the part's next row.

        A shard that stored nothing yet takes a part of its own: a shard of the same rank folded by an earlier
        attempt has its rows in `<db>.partial` now, pointing into its old part, which must not be written over.
        """
        if self.shard is None:
            part = MAIN_PART
        else:
            found = con.execute(f"SELECT any_value(part) FROM {schema.STAGED_ROWS}").fetchone()[0]
            part = found or f"rank{self.shard.rank}-of-{self.shard.world}-{uuid.uuid4().hex[:8]}"
        (rows,) = con.execute(f"SELECT coalesce(max(row) + 1, 0) FROM {schema.STAGED_ROWS} WHERE part = ?",
                              [part]).fetchone()
        return part, rows

    def _create(self, spec: RunSpec, config_hash: str) -> None:
        """Store the run's own rows (runs, layers, units, categories) in a new working file (worker.run_rows)."""
        with self._transaction() as con:
            insert_run(con, self._run_id, spec, config_hash)

    def fold_shards(self) -> int:
        """Fold the shards of a distributed run into the run's working file (worker.shards); returns the files moved."""
        config_hash = self.partial_hash()
        return fold_shards(self._work(), self.partial, self.db, config_hash) if config_hash else 0

    def write_batch(
        self,
        images: Sequence[ImageRow],
        skipped: Iterable[tuple[int, str, str]],
        responses: Mapping[str, np.ndarray],
        image_stats: np.ndarray | None = None,
    ) -> None:
        """Store one batch: its responses ({layer: float32 [len(images), units, 3] (mean, max, min)}) in the staged
        arrays, then in one transaction its images, where their responses sit, its skipped files (file id, path,
        reason) and, when given, the images' low-level statistics (float32 [len(images), 5] in
        schema.IMAGE_STAT_COLUMNS order)."""
        skipped = list(skipped)
        for layer, stats in responses.items():
            if len(stats) != len(images):
                raise ValueError(f"{layer}: {len(stats)} response rows for {len(images)} images")
        if images:
            self.staged.write(self._part, self._next_row, responses)
        with self._transaction() as con:
            insert_batch(con, self._run_id, images, skipped, (self._part, self._next_row), image_stats)
        self._next_row += len(images)

    def maps_todo(self) -> MapsTodo:
        """The second pass's work left: image id -> layer -> units (worker.map_store.maps_todo)."""
        return maps_todo(self._work(), self._run_id, self.staged)

    def write_maps(self, maps: Sequence[Maps]) -> None:
        """Store a batch of maps in one transaction."""
        with self._transaction() as con:
            insert_maps(con, self._run_id, maps)

    def _transaction(self) -> Transaction:
        return Transaction(self._work(), self.partial)

    # ---------------------------------------------------------------- publication

    def rederive(self) -> int:
        """Recompute the derived tables of every published run (worker.publish.rederive); returns the layers done."""
        if not self.db.exists():
            raise no_db(self.db)
        return rederive(self.db, self.publishing, config=self._config)

    def publish(self, *, ranked_k: int = schema.RANKED_K) -> Published:
        """Publish the finished run to `<db>` (worker.publish) and delete the working file.

        ranked_k: how many images of each unit to rank on each side of every stat (tests lower it).
        """
        con = self._work()
        n_files, n_images, n_skipped = con.execute(
            f"SELECT n_files, (SELECT count(*) FROM {schema.IMAGES}), (SELECT count(*) FROM {schema.SKIPPED}) "
            f"FROM {schema.RUNS}"
        ).fetchone()
        if n_images + n_skipped != n_files:
            raise StoreError(f"run is unfinished: {n_images + n_skipped} of {n_files} files stored")
        if not n_images:
            self._refuse_empty(con)
        try:
            con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            raise write_error(self.partial, exc) from None
        self.close_work()
        return publish_run(self.db, self.partial, self.publishing, self.staged, config=self._config,
                           ranked_k=ranked_k)

    def _refuse_empty(self, con: duckdb.DuckDBPyConnection) -> None:
        """Every file was skipped (none decoded): a StoreError saying why, instead of statistics over no images.

        The working file holds only the skip reasons, which the error reports, so it is deleted: a rerun
        lists and decodes the files afresh and, if the folder is unchanged, stops with the same error.
        """
        # Imported here, as worker.images imports torch; a run that got this far has loaded it already.
        from worker.images import none_usable

        (root,) = con.execute(f"SELECT images_root FROM {schema.RUNS}").fetchone()
        reasons = dict(con.execute(f"SELECT reason, count(*) FROM {schema.SKIPPED} GROUP BY reason").fetchall())
        self.discard_partial()
        raise StoreError(f"{none_usable(root, reasons)}; nothing was published")
