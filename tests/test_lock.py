"""worker.lock: one writer per DB, refused with the holder's pid, released when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from worker.db_files import StoreError
from worker.lock import WriterLock
from worker.store import WorkerStore

REPO = Path(__file__).resolve().parent.parent


def test_the_lock_refuses_a_second_writer_and_dies_with_its_holder(tmp_path):
    db = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from worker.store import WorkerStore; "
         "s = WorkerStore.open(Path(sys.argv[1])); print('locked', flush=True); time.sleep(120)", str(db)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert Path(f"{db}.lock").read_text() == f"{holder.pid}\n"
        with pytest.raises(StoreError, match=rf"another worker \(pid {holder.pid}\) is writing {db}"):
            WorkerStore.open(db)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    with WorkerStore.open(db):  # kill -9 released it
        pass


def test_a_released_lock_can_be_taken_again_and_names_its_new_holder(tmp_path):
    path, db = tmp_path / "x.duckdb.lock", tmp_path / "x.duckdb"
    first = WriterLock.acquire(path, db)
    first.release()
    first.release()  # a second release does nothing
    second = WriterLock.acquire(path, db)
    try:
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        second.release()


def test_a_lock_file_that_cannot_be_created_names_the_folder(tmp_path):
    missing = tmp_path / "gone"
    with pytest.raises(StoreError, match=f"cannot write in {missing} .*must be writable"):
        WriterLock.acquire(missing / "x.duckdb.lock", missing / "x.duckdb")
