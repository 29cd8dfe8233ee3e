"""`torchrun --nproc-per-node=2 -m worker run` on the CPU (gloo): the same DB as one process, and a killed rank.

The reference runs with OMP_NUM_THREADS=1, as torchrun sets for each rank: on the CPU the float32
values depend on the thread count (not on the process count), and then every table is equal.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from unitscope import schema
from worker.lock import WriterLock

REPO = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).with_name("torchrun")
CLASSES = ("n01440764", "n02088364")  # tench, beagle (a dog)
PER_CLASS = 7
# conv1 and mixed4a: from mixed4a on, a batch of one gives other values than a larger batch, so
# the ranks' batches must be the single process's (worker.shards.files_of). Batches of two: 7 batches,
# 4 on rank 0 and 3 on rank 1.
ARGS = ("--weights", "random", "--seed", "0", "--layers", "conv1", "mixed4a", "--batch-size", "2", "--workers", "0")
RUN_ONLY = ("started_at", "finished_at", "device")  # run metadata, not results

pytestmark = pytest.mark.slow


def env() -> dict[str, str]:
    """This checkout's worker, one thread as under torchrun, and no UNITSCOPE_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UNITSCOPE_")}
    return {**clean, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def single_cmd(images: Path, db: Path) -> list[str]:
    return [sys.executable, "-m", "worker", "run", "--images", str(images), "--db", str(db), *ARGS]


def torchrun_cmd(images: Path, db: Path) -> list[str]:
    return [str(TORCHRUN), "--nproc-per-node=2", "-m", "worker", "run", "--images", str(images), "--db", str(db),
            *ARGS]  # fmt: skip


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, imagenet_sample: Path) -> Path:
    root = tmp_path_factory.mktemp("images")
    for wnid in CLASSES:
        (root / wnid).mkdir()
        for path in sorted((imagenet_sample / wnid).iterdir())[:PER_CLASS]:
            shutil.copy(path, root / wnid / path.name)
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, images: Path) -> Path:
    db = tmp_path_factory.mktemp("reference") / "single.duckdb"
    done = subprocess.run(single_cmd(images, db), cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return db


def tables(db: Path) -> dict[str, list[tuple]]:
    """Every table of a DB, all columns but the run's metadata, rows sorted."""
    with duckdb.connect(str(db), read_only=True) as con:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY 1"
        ).fetchall()]  # fmt: skip
        result = {}
        for name in names:
            columns = [r[0] for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                "AND table_name = ? ORDER BY column_index", [name]
            ).fetchall() if r[0] not in RUN_ONLY]  # fmt: skip
            result[name] = con.execute(f"SELECT {', '.join(columns)} FROM {name} ORDER BY ALL").fetchall()
    return result


def assert_same_db(db: Path, reference: Path) -> None:
    ours, theirs = tables(db), tables(reference)
    assert set(schema.DERIVED_TABLES) <= set(ours)
    assert list(ours) == list(theirs)
    for name in (schema.IMAGES, schema.IMAGE_STATS, schema.RESPONSES, schema.UNIT_SI, schema.UNIT_RANKS,
                 schema.UNIT_MAPS):  # fmt: skip
        assert ours[name], name  # the comparison below compares something
    for name in ours:
        assert ours[name] == theirs[name], name  # floats exactly equal
    assert not list(db.parent.glob(f"{db.name}.shard-*")) and not Path(f"{db}.partial").exists()


def test_two_ranks_publish_the_single_process_db(tmp_path: Path, images: Path, reference: Path) -> None:
    db = tmp_path / "dist.duckdb"
    done = subprocess.run(torchrun_cmd(images, db), cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "rank 1 of 2: 6 images stored in dist.duckdb.shard-1-of-2; rank 0 publishes" in done.stderr
    # The summary's counts are rank 0's share, and say so beside the whole run's
    assert re.search(r"published to .*: 14 images, 0 skipped; this session, rank 0 of 2: 8 images in", done.stderr), \
        done.stderr
    assert_same_db(db, reference)


def rank_pid(torchrun: int, rank: int) -> int | None:
    """The pid of the worker process of `rank` among torchrun's children (from their environment)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0") if ppid == torchrun else []
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def test_a_killed_rank_fails_the_run_naming_it_and_a_rerun_resumes(tmp_path: Path, images: Path,
                                                                    reference: Path) -> None:  # fmt: skip
    db = tmp_path / "dist.duckdb"
    cmd = torchrun_cmd(images, db)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stderr=subprocess.PIPE, start_new_session=True)
    out, killed = b"", None
    try:
        while chunk := os.read(proc.stderr.fileno(), 4096):
            out += chunk
            # rank 1's bar moves once a batch is committed to its shard
            stored = re.findall(rb"rank 1 of 2: +\d+%\|[^|]*\| *(\d+)/\d+ \[", out)
            if killed is None and stored and int(stored[-1]) >= 2:
                killed = rank_pid(proc.pid, 1)
                assert killed is not None
                os.kill(killed, signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    text = out.decode(errors="replace")
    assert killed is not None, text
    assert proc.returncode != 0
    # torchrun's failure summary names the rank and the cause
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)\s+exitcode\s*:\s*-9", text), text
    assert f"Signal 9 (SIGKILL) received by PID {killed}" in text, text
    assert not db.exists()
    with duckdb.connect(str(db.with_name(db.name + ".shard-1-of-2")), read_only=True) as con:
        kept = con.execute("SELECT count(*) FROM images").fetchone()[0]
    assert kept in (2, 4, 6)  # whole batches of rank 1's share

    rerun = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    resumed = re.search(r"rank 0 of 2: resuming: (\d+) of 14 files already stored", rerun.stderr)
    assert resumed and kept <= int(resumed[1]) < 14, rerun.stderr  # the killed rank's batches are kept
    assert_same_db(db, reference)


def test_a_run_under_torchrun_stops_at_another_workers_lock(tmp_path: Path, images: Path) -> None:
    db = tmp_path / "locked.duckdb"
    lock = WriterLock.acquire(db.with_name(db.name + ".lock"), db)  # as a running single-process worker does
    try:
        done = subprocess.run(torchrun_cmd(images, db), cwd=REPO, env=env(), capture_output=True, text=True,
                              timeout=300)  # fmt: skip
    finally:
        lock.release()
    assert done.returncode != 0
    assert f"error (rank 0 of 2): another worker (pid {os.getpid()}) is writing {db}" in done.stderr, done.stderr
    # torchrun's summary: rank 0 failed, with the worker's own message as the cause
    assert re.search(r"rank\s*:\s*0 \(local_rank: 0\)\s+exitcode\s*:\s*1", done.stderr), done.stderr
    assert "StoreError: another worker" in done.stderr
    assert not list(tmp_path.glob("locked.duckdb.*shard*")) and not db.exists()
