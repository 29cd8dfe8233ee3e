"""What the two interventions (worker.visualize, worker.ablate) share: a published run opened under the DB's
lock, its network loaded as the run had it, a resumable working file, and publication of the rows it holds.

Files beside `<db>`: `<db>.<job>` (the job's working DuckDB file, kept after an interruption so that the same
command resumes) and `<db>.publishing` (worker.publish.publish_rows, renamed over `<db>`).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import duckdb

from unitscope import schema
from unitscope.data.runs import Run, require_run
from unitscope.data.source import ConnectionSource, open_read_only
from unitscope.errors import Problem
from worker.db_files import Transaction, init_schema, no_db, remove, wal_of
from worker.publish import publish_rows
from worker.settings import InterventionSettings
from worker.store import StoreError, WorkerStore

if TYPE_CHECKING:
    import torch

    from worker.models import LoadedModel


class Job:
    """One intervention job on a published run: the DB's lock, a read-only view of the run, and a working file."""

    def __init__(self, name: str, settings: InterventionSettings) -> None:
        self.name, self.settings = name, settings
        self._stack = ExitStack()
        # Set before anything can fail: close() reads them.
        self._con: duckdb.DuckDBPyConnection | None = None
        self._work: duckdb.DuckDBPyConnection | None = None
        db = Path(settings.db).expanduser()
        if not db.is_file():
            raise no_db(db)
        self.store = self._stack.enter_context(WorkerStore.open(db, memory_limit=settings.memory_limit))
        self.db = self.store.db
        try:
            self._con = open_read_only(self.db)
            self.source = ConnectionSource(self._con)
            self.run: Run = require_run(self.source, settings.run)
            self.layer = settings.layer or self.run.default_layer()[0]
            if self.layer not in self.run.layers:
                raise ValueError(f"--layer {self.layer}: run {self.run.run_id} has {', '.join(self.run.layers)}")
            if settings.category not in self.run.categories:
                raise ValueError(f"--category {settings.category}: run {self.run.run_id} has "
                                 f"{', '.join(self.run.categories)}")
        except Problem as problem:
            self.close()
            raise StoreError(str(problem)) from None
        except BaseException:
            self.close()
            raise
        self.units = self.run.layers[self.layer][0]
        self.work_path = self.db.with_name(f"{self.db.name}.{name}")

    def __enter__(self) -> Job:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._work is not None:
            self._work.close()
            self._work = None
        if self._con is not None:
            self._con.close()
            self._con = None
        self._stack.close()

    def load_model(self) -> LoadedModel:
        """The run's network with the run's weights (or --weights where they moved), checked by sha256."""
        from worker.models import WeightsError, get_model, recorded_weights

        weights, seed = ((self.settings.weights, None) if self.settings.weights is not None
                         else recorded_weights(self.run.weights))
        try:
            model = get_model(self.run.model, weights=weights, seed=seed)
        except WeightsError as error:
            if self.settings.weights is None:
                raise
            # Another network's weights fail inside the run's model's loader: say whose weights are wanted first.
            raise WeightsError(f"--weights {weights} do not load as run {self.run.run_id}'s {self.run.model} "
                               f"({error}); pass the run's own, {self.run.weights}") from error
        if model.weights_sha256 != self.run.weights_sha256:
            raise ValueError(f"the weights at {model.weights} are not run {self.run.run_id}'s (sha256 "
                             f"{model.weights_sha256[:12]}… against {self.run.weights_sha256[:12]}…); pass --weights "
                             "with the run's own")
        return model

    def device(self) -> torch.device:
        from worker.extract import resolve_device

        return resolve_device(self.settings.device)

    def work(self, config: dict[str, object]) -> duckdb.DuckDBPyConnection:
        """The working file, resumed when it was left by the same configuration, else started afresh."""
        if self._work is not None:
            return self._work
        digest = config_digest(config)
        if self.work_path.exists():
            try:
                with duckdb.connect(str(self.work_path), read_only=True) as con:
                    found = con.execute(f"SELECT value FROM {schema.META} WHERE key = 'job'").fetchall()
            except duckdb.Error:
                found = []
            if not found or found[0][0] != digest:
                remove(self.work_path, wal_of(self.work_path))
        self._work = duckdb.connect(str(self.work_path))
        init_schema(self._work, self.work_path)
        self._work.execute(f"INSERT INTO {schema.META} VALUES ('job', ?) ON CONFLICT DO NOTHING", [digest])
        return self._work

    def transaction(self) -> Transaction:
        assert self._work is not None
        return Transaction(self._work, self.work_path)

    def write_classes(self, model: LoadedModel) -> None:
        """The network's classes beside the rows that read its output."""
        con = self._work
        assert con is not None
        with self.transaction():
            con.execute(f"DELETE FROM {schema.NETWORK_CLASSES}")
            con.executemany(f"INSERT INTO {schema.NETWORK_CLASSES} VALUES (?, ?, ?, ?)",
                            [(self.run.run_id, i, w, n) for i, (w, n) in
                             enumerate(zip(model.class_wnids, model.class_names, strict=True))])

    def publish(self, tables: Sequence[tuple[str, Sequence[str]]]) -> int:
        """Publish the working file's rows into `<db>` (worker.publish.publish_rows); returns the rows added."""
        assert self._work is not None
        self._work.execute("CHECKPOINT")
        self._work.close()
        self._work = None
        self._con.close()
        self._con = None
        classes = (schema.NETWORK_CLASSES, ("run_id", "class_index"))
        config = {"memory_limit": self.settings.memory_limit} if self.settings.memory_limit else {}
        added = publish_rows(self.db, self.work_path, self.store.publishing, config=config, tables=[classes, *tables])
        remove(self.work_path, wal_of(self.work_path))
        return added


def config_digest(config: dict[str, object]) -> str:
    """What identifies a job's configuration in its working files, so that a rerun resumes only the same job."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
