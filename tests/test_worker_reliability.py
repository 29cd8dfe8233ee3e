"""The worker against hostile folders, kill -9, concurrent readers, a second worker and unwritable DBs."""

from __future__ import annotations

import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
from fixtures import png_header_only
from PIL import Image

from unitscope import schema
from unitscope.maps import decode
from worker.categories import builtin_category
from worker.models import GOOGLENET_LAYERS
from worker.run_rows import ImageRow, LayerSpec, RunSpec
from worker.store import WorkerStore

REPO = Path(__file__).resolve().parent.parent
DOG = "n02088364"  # beagle, in the built-in dog category
TENCH = "n01440764"


def worker_cmd(images: Path, db: Path, weights: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "worker", "run", "--images", str(images), "--db", str(db),
            "--model", "bvlc-googlenet", "--weights", str(weights), *extra]  # fmt: skip


def clean_env() -> dict[str, str]:
    """The test's environment without UNITSCOPE_* settings, so only the flags count."""
    return {k: v for k, v in os.environ.items() if not k.startswith("UNITSCOPE_")}


def run_worker(cmd: list[str], timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=timeout, **kw)


def sample_files(sample: Path, wnid: str, n: int) -> list[Path]:
    return sorted((sample / wnid).iterdir())[:n]


def build_hostile_folder(root: Path, sample: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A messy ImageFolder; returns ({good path: original mode}, {bad path: expected reason part})."""
    dog, tench, other = root / DOG, root / TENCH, root / "not a wnid folder"
    for folder in (dog, tench, other):
        folder.mkdir(parents=True)
    real = sample_files(sample, DOG, 2)
    photo = Image.open(real[0]).convert("RGB")
    good: dict[str, str] = {}
    bad: dict[str, str] = {}

    shutil.copy(real[0], dog / "plain.JPEG")
    good[f"{DOG}/plain.JPEG"] = "RGB"
    shutil.copy(real[1], dog / "ünïcödé name with spaces.JPEG")
    good[f"{DOG}/ünïcödé name with spaces.JPEG"] = "RGB"
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(dog / "alpha.png")
    good[f"{DOG}/alpha.png"] = "RGBA"
    photo.convert("CMYK").save(dog / "cmyk.jpg")
    good[f"{DOG}/cmyk.jpg"] = "CMYK"
    gray16 = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(dog / "gray16.png")
    good[f"{DOG}/gray16.png"] = Image.open(dog / "gray16.png").mode  # I;16 (or I, by Pillow version)
    photo.convert("P", palette=Image.Palette.ADAPTIVE).save(dog / "palette.gif")
    good[f"{DOG}/palette.gif"] = "P"
    shutil.copy(sample_files(sample, TENCH, 1)[0], tench / "fish.JPEG")
    good[f"{TENCH}/fish.JPEG"] = "RGB"
    shutil.copy(real[0], other / "x.jpg")
    good["not a wnid folder/x.jpg"] = "RGB"

    (dog / "zero.JPEG").touch()
    bad[f"{DOG}/zero.JPEG"] = "empty file"
    blob = real[0].read_bytes()
    (dog / "truncated.JPEG").write_bytes(blob[: len(blob) // 2])
    bad[f"{DOG}/truncated.JPEG"] = "truncated"
    (dog / "text.JPEG").write_text("this is not a picture\n")
    bad[f"{DOG}/text.JPEG"] = "not an image"
    png_header_only(dog / "bomb.png", 100_000, 100_000)
    bad[f"{DOG}/bomb.png"] = "decompression bomb"
    os.symlink("self.jpg", dog / "self.jpg")  # a link to itself
    bad[f"{DOG}/self.jpg"] = "symlink loop"
    os.symlink(".", dog / "again")  # a folder link back into its own folder
    bad[f"{DOG}/again"] = "symlink loop"
    shutil.copy(real[0], dog / "vanishing.JPEG")  # deleted after listing, before decoding
    bad[f"{DOG}/vanishing.JPEG"] = "file not found"
    if os.geteuid() != 0:  # root reads anything; the vanishing file covers the unreadable case there
        shutil.copy(real[0], dog / "locked.JPEG")
        os.chmod(dog / "locked.JPEG", 0)
        bad[f"{DOG}/locked.JPEG"] = "permission denied"
    shutil.copy(real[0], root / "stray.jpg")
    bad["stray.jpg"] = "not inside a class folder"
    (dog / "notes.txt").write_text("not an image extension: ignored, not a file of the run")
    return good, bad


def test_hostile_folder_completes_with_every_bad_file_recorded(tmp_path, imagenet_sample, bvlc_weights):
    images, db = tmp_path / "hostile", tmp_path / "hostile.duckdb"
    good, bad = build_hostile_folder(images, imagenet_sample)
    cmd = worker_cmd(images, db, bvlc_weights, "--layers", "conv1", "--batch-size", "3", "--workers", "2")
    proc = subprocess.Popen(cmd, cwd=REPO, env=clean_env(), stderr=subprocess.PIPE, text=True)
    # The file list is fixed once the worker prints it; make one listed file vanish before decoding.
    first = proc.stderr.readline()
    assert first.startswith(f"found {len(good) + len(bad)} image files"), first
    (images / DOG / "vanishing.JPEG").unlink()
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 3, rest
    assert "Traceback" not in rest

    con = duckdb.connect(str(db), read_only=True)
    ((run_id, status, n_files),) = con.execute("SELECT run_id, status, n_files FROM runs").fetchall()
    assert status == schema.RUN_COMPLETE and n_files == len(good) + len(bad)
    rows = con.execute("SELECT path, wnid, class_index, class_name, mode, width, height FROM images").fetchall()
    assert sorted(r[0] for r in rows) == sorted(good)  # every good image exactly once
    by_path = {r[0]: r for r in rows}
    for path, mode in good.items():
        assert by_path[path][4] == mode
    assert by_path["not a wnid folder/x.jpg"][1:4] == ("not a wnid folder", None, "not a wnid folder")
    assert by_path[f"{TENCH}/fish.JPEG"][2:4] == (0, "tench, Tinca tinca")
    photo = Image.open(images / DOG / "plain.JPEG")
    assert by_path[f"{DOG}/cmyk.jpg"][5:] == photo.size
    skipped = dict(con.execute("SELECT path, reason FROM skipped").fetchall())
    assert sorted(skipped) == sorted(bad)
    for path, reason in bad.items():
        assert reason in skipped[path], (path, skipped[path])
    # Images and skipped files share one numbering: the run's sorted file list.
    ids = [r[0] for r in con.execute("SELECT image_id FROM images UNION ALL SELECT file_id FROM skipped").fetchall()]
    assert sorted(ids) == list(range(n_files))
    n_rows, n_distinct = con.execute(
        "SELECT count(*), count(DISTINCT (layer, unit, image_id)) FROM responses"
    ).fetchone()
    assert n_rows == n_distinct == len(good) * GOOGLENET_LAYERS["conv1"]
    assert con.execute("SELECT count(*) FROM staged_rows").fetchone()[0] == 0
    assert not db.with_name(db.name + ".staged").exists()  # the staged arrays went with the working file


# ---------------------------------------------------------------- kill -9 and resume


class Reader(threading.Thread):
    """Opens the published DB over and over, as the server would, and records what it sees."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db, self.stop, self.looks, self.problems = db, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            if self.db.exists():
                try:
                    self.check()
                except duckdb.Error as exc:  # a DB that cannot be opened counts as a failure too
                    self.problems.append(f"open failed: {exc}")
            time.sleep(0.02)

    def check(self) -> None:
        with duckdb.connect(str(self.db), read_only=True) as con:
            for run_id, status, n_files in con.execute("SELECT run_id, status, n_files FROM runs").fetchall():
                images, skipped, responses, units = con.execute(
                    "SELECT (SELECT count(*) FROM images WHERE run_id = $r), "
                    "(SELECT count(*) FROM skipped WHERE run_id = $r), "
                    "(SELECT count(*) FROM responses WHERE run_id = $r), "
                    "(SELECT sum(units) FROM layers WHERE run_id = $r)",
                    {"r": run_id},
                ).fetchone()
                if status != schema.RUN_COMPLETE or images + skipped != n_files or responses != images * units:
                    self.problems.append((run_id, status, n_files, images, skipped, responses))
            self.looks += 1


def publish_small_run(db: Path) -> None:
    """Publish a two-image conv1 run with made-up values through the worker's own store."""
    spec = RunSpec(
        model="bvlc-googlenet", weights="made up", weights_sha256="none", preprocessing="{}",
        images_root="/made/up", files=("n01440764/a.JPEG", "n02088364/b.JPEG"),
        layers=(LayerSpec(name="conv1", position=0, units=64, module="conv1/7x7_s2", branches=("conv",) * 64),),
        categories=(builtin_category("dog"),), device="cpu",
    )  # fmt: skip
    with WorkerStore.open(db) as store:
        store.begin(spec)
        rows = [ImageRow(0, spec.files[0], "n01440764", 0, "tench", 10, 10, "RGB"),
                ImageRow(1, spec.files[1], "n02088364", 162, "beagle", 10, 10, "RGB")]  # fmt: skip
        values = np.random.default_rng(0).standard_normal((2, 64, 3)).astype(np.float32)
        store.write_batch(rows, [], {"conv1": values})
        store.publish()


def run_until_killed(cmd: list[str], target: int | str | None) -> tuple[str, int]:
    """Start the worker; SIGKILL it (and its decoding processes) once `target` images are stored, in
    the second pass once it has stored images when `target` is "maps", or while it publishes when
    `target` is None. Returns (what it printed, progress seen at the kill)."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=clean_env(), stderr=subprocess.PIPE, start_new_session=True)
    seen, out = 0, b""
    try:
        while True:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            out += chunk
            counts = re.findall(rb"\| *(\d+)/\d+ \[", out)
            seen = int(counts[-1]) if counts else 0
            maps = re.findall(rb"maps: +\d+%\|[^|]*\| *(\d+)/\d+ \[", out)
            if target == "maps" and maps and int(maps[-1]) > 0:
                break
            if (isinstance(target, int) and seen >= target) or (target is None and b"publishing:" in out):
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker's own process group (start_new_session)
        proc.wait()
        proc.stderr.close()
    return out.decode(errors="replace"), seen


def table(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_kill_9_at_random_points_resumes_to_the_uninterrupted_result(tmp_path, imagenet_sample, bvlc_weights):
    args = ("--layers", "conv1", "conv3", "--limit", "40", "--batch-size", "2", "--workers", "0")
    reference = tmp_path / "reference.duckdb"
    assert run_worker(worker_cmd(imagenet_sample, reference, bvlc_weights, *args)).returncode == 0

    # The DB already holds an older run, which a reader must keep seeing intact all along.
    db = tmp_path / "db.duckdb"
    publish_small_run(db)
    reader = Reader(db)
    reader.start()
    cmd = worker_cmd(imagenet_sample, db, bvlc_weights, *args)
    rng = random.Random(1234)
    # "maps": during the second pass; None: while publishing.
    kills = [rng.randint(2, 10), rng.randint(12, 20), rng.randint(22, 30), "maps", None]
    outputs = []
    try:
        for target in kills:
            out, seen = run_until_killed(cmd, target)
            outputs.append(out)
            assert "Traceback" not in out
            with duckdb.connect(str(db), read_only=True) as con:
                runs = table(con, "SELECT run_id, status FROM runs ORDER BY run_id")
            # Killed before publishing: only the older run; killed while publishing: maybe both.
            assert runs in ([(1, "complete")], [(1, "complete"), (2, "complete")]), (target, seen, runs)
        final = run_worker(cmd)
        outputs.append(final.stderr)
    finally:
        reader.stop.set()
        reader.join()
    assert final.returncode == 0, final.stderr
    assert reader.looks > 0 and reader.problems == []
    assert not Path(f"{db}.partial").exists()
    # Each rerun resumed where the killed one stopped: stored batches are never recomputed.
    resumed = [int(m.group(1)) for out in outputs[1:] if (m := re.search(r"resuming: (\d+) of 40", out))]
    assert len(resumed) >= 3 and resumed == sorted(resumed) and 0 < resumed[0] and resumed[2] < 40, resumed
    # The second pass killed midway continued with the images it had not stored.
    passes = [int(n) for out in outputs for n in re.findall(r"second pass: the maps of the (\d+) images", out)]
    assert len(passes) >= 2 and passes[1] < passes[0], passes

    with duckdb.connect(str(reference), read_only=True) as ref, duckdb.connect(str(db), read_only=True) as con:
        assert table(con, "SELECT run_id, status FROM runs ORDER BY run_id") == [(1, "complete"), (2, "complete")]
        for sql in (
            "SELECT image_id, path, wnid, class_index, class_name, width, height, mode FROM images "
            "WHERE run_id = {r} ORDER BY image_id",
            "SELECT file_id, path, reason FROM skipped WHERE run_id = {r} ORDER BY file_id",
            "SELECT layer, unit, branch FROM units WHERE run_id = {r} ORDER BY layer, unit",
            # SI is an average whose summation order DuckDB may parallelise: equal to 12 places.
            "SELECT layer, category, stat, unit, round(si, 12) FROM unit_si WHERE run_id = {r} ORDER BY ALL",
            "SELECT layer, stat, side, unit, rank, image_id FROM unit_ranks WHERE run_id = {r} ORDER BY ALL",
        ):
            assert table(con, sql.format(r=2)) == table(ref, sql.format(r=1))
        query = ("SELECT layer, unit, image_id, act_mean, act_max, act_min FROM responses WHERE run_id = {r} "
                 "ORDER BY layer, unit, image_id")  # fmt: skip
        ours, theirs = con.execute(query.format(r=2)).fetchnumpy(), ref.execute(query.format(r=1)).fetchnumpy()
        assert len(ours["unit"]) == 40 * (64 + 192)  # no duplicates, nothing missing
        for column in ("layer", "unit", "image_id", "act_mean", "act_max", "act_min"):
            np.testing.assert_array_equal(ours[column], theirs[column])
        # The second pass, killed midway, stored every map once; the values are the same float16
        # maps (batches of another composition may move one to the next float16).
        query = "SELECT layer, unit, image_id, height, width, values_f16 FROM unit_maps WHERE run_id = {r} ORDER BY ALL"
        ours, theirs = table(con, query.format(r=2)), table(ref, query.format(r=1))
        assert [r[:5] for r in ours] == [r[:5] for r in theirs] and len(ours) > 0
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(decode(a[5], a[3], a[4]), decode(b[5], b[3], b[4]), rtol=2**-10, atol=1e-3)


# ---------------------------------------------------------------- a second worker, unwritable places


def test_second_worker_on_the_same_db_is_refused(tmp_path, imagenet_sample, bvlc_weights):
    db = tmp_path / "shared.duckdb"
    first_cmd = worker_cmd(imagenet_sample, db, bvlc_weights, "--layers", "conv1", "--limit", "400",
                           "--batch-size", "2", "--workers", "0")  # fmt: skip
    first = subprocess.Popen(
        first_cmd, cwd=REPO, env=clean_env(), stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        # The first worker holds the lock once it prints the listing (the lock file then holds its pid).
        assert first.stderr.readline().startswith("found 6308 image files")
        assert Path(f"{db}.lock").read_text().strip() == str(first.pid)
        second = run_worker(worker_cmd(imagenet_sample, db, bvlc_weights, "--layers", "conv1", "--limit", "4"))
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        first.stderr.close()
    assert second.returncode == 1
    message = second.stderr.strip().splitlines()[-1]
    assert (
        message == f"error: another worker (pid {first.pid}) is writing {db}; wait for it to finish or use another --db"
    )
    assert "Traceback" not in second.stderr
    assert not db.exists()  # nothing was published by either


def test_db_in_an_unwritable_folder_gives_a_clear_error(tmp_path, imagenet_sample, bvlc_weights):
    if os.geteuid() == 0:
        folder = Path("/sys")  # not writable even by root
    else:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
    result = run_worker(worker_cmd(imagenet_sample, folder / "x.duckdb", bvlc_weights, "--limit", "2"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: cannot write in {folder} (Permission denied): the DB's folder must be writable"
    )


def test_disk_full_while_writing_gives_a_clear_error_and_loses_nothing(tmp_path, imagenet_sample, bvlc_weights):
    db = tmp_path / "full.duckdb"
    cmd = worker_cmd(imagenet_sample, db, bvlc_weights, "--layers", "conv1", "conv2", "mixed3a", "mixed4a",
                     "--limit", "24", "--batch-size", "4", "--workers", "0")  # fmt: skip

    def small_disk() -> None:
        # No file may grow past 100 kB: mixed4a's staged array (512 units x 12 bytes an image) hits that in the
        # fifth batch and the write fails with EFBIG, as on a full disk.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    full = run_worker(cmd, preexec_fn=small_disk)
    assert full.returncode == 1, full.stderr
    message = full.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: cannot write {db}.staged/main/mixed4a.f32: ") and "disk full" in message, message
    assert "Traceback" not in full.stderr
    assert not db.exists()  # nothing half-written was published
    # With space again, the same command resumes after the last stored batch and finishes.
    again = run_worker(cmd)
    assert again.returncode == 0, again.stderr
    stored = int(re.search(r"resuming: (\d+) of 24 files", again.stderr).group(1))
    assert 0 < stored < 24 and stored % 4 == 0
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT image_id) FROM images").fetchone() == (24, 24)
        assert con.execute("SELECT count(*) FROM responses").fetchone() == (24 * (64 + 64 + 256 + 512),)
