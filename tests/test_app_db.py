"""The hand-made DB the server tests share (values worked out by hand below), and the DB layer's tests.

Other test_app_* files import the builders and fixtures from here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.main import create_app
from worker import schema
from worker.metrics_sql import insert_ranks

REPO = Path(__file__).resolve().parent.parent
DOG, TENCH, GOLDFISH = "n02085620", "n01440764", "n01443537"

# Run 1 (complete): six images; 0-2 are dogs (Chihuahua), 3-4 tench, 5 goldfish.
IMAGES = [
    (0, f"{DOG}/dog a.JPEG", DOG, 151, "Chihuahua"),
    (1, f"{DOG}/dog_b.JPEG", DOG, 151, "Chihuahua"),
    (2, f"{DOG}/dog_c.JPEG", DOG, 151, "Chihuahua"),
    (3, f"{TENCH}/tench_a.JPEG", TENCH, 0, "tench"),
    (4, f"{TENCH}/tench_b.JPEG", TENCH, 0, "tench"),
    (5, f"{GOLDFISH}/fish.JPEG", GOLDFISH, 1, "goldfish"),
]
CATEGORIES = {"dog": [DOG], "fish": [TENCH, GOLDFISH]}
# (act_mean, act_max, act_min) per image, for the three units of mixed4c.
MIXED4C = {
    # max: 10 8 6 | 0 2 4 -> A_N 1 .8 .6 | 0 .2 .4 -> SI(max) = .8 / (.8 + .2) = 0.8
    # mean: 3 -.5 .1 | -2 .2 1 -> A_N (÷5 after +2) 1 .3 .42 | 0 .44 .6 -> SI(mean) = 1.72 / 2.76
    0: [(3.0, 10.0, -1.0), (-0.5, 8.0, -2.0), (0.1, 6.0, -3.0), (-2.0, 0.0, -9.0), (0.2, 2.0, -8.0), (1.0, 4.0, -7.0)],
    # max constant -> SI undefined (NULL); every value tied -> ties broken by image id
    1: [(1.0, 5.0, 0.0), (2.0, 5.0, 0.0), (3.0, 5.0, 0.0), (4.0, 5.0, 0.0), (4.5, 5.0, 0.0), (2.5, 5.0, 0.0)],
    # max: 0 0 0 | 3 6 9 -> mean_C(A_N) = 0 -> SI = 0
    2: [(-2.0, 0.0, -5.0), (-3.0, 0.0, -6.0), (-1.0, 0.0, -4.0), (2.0, 3.0, 1.0), (3.0, 6.0, 1.0), (4.0, 9.0, 1.0)],
}
CONV1 = {  # two units; only here so /layers has more than one layer (no precomputed scores)
    0: [(0.0, float(i), -float(i)) for i in range(6)],
    1: [(0.0, float(5 - i), -1.0) for i in range(6)],
}
# Expected scores (unit, si, in_top, in_bottom), dog, pos max, neg min, si max:
EXPECTED_K2 = [(0, 0.8, 2, 0), (1, None, 2, 2), (2, 0.0, 0, 2)]
# k >= 6 images: every unit's top and bottom hold all 3 dogs.
EXPECTED_K1000 = [(0, 0.8, 3, 3), (1, None, 3, 3), (2, 0.0, 3, 3)]
SI_MEAN_UNIT0 = 1.72 / 2.76
# conv1, k=2: unit 0: max 0..5 -> top 5,4, min 0..-5 -> bottom 5,4 (no dog), SI(max) .2/(.2+.8);
# unit 1: max 5..0 -> top 0,1, min all tied -> bottom 0,1 by id (dogs), SI(max) .8/(.8+.2)
EXPECTED_CONV1_K2 = [(0, 0.2, 0, 0), (1, 0.8, 2, 2)]


def _photo(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), color).save(path, format="JPEG")


def make_images(root: Path) -> Path:
    """Real JPEGs for the images above, plus a secret outside the folder and a symlink escaping to it."""
    images = root / "images"
    for image_id, rel, *_ in IMAGES:
        if image_id != 5:
            _photo(images / rel, (40 * image_id, 200 - 30 * image_id, 90))
    secret = root / "secret.JPEG"
    _photo(secret, (255, 0, 0))
    (root / "secret.txt").write_text("the server must never send this")
    # Image 5 is a symlink out of the image folder: the server must refuse it.
    (images / IMAGES[5][1]).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(secret, images / IMAGES[5][1])
    return images


def build_db(path: Path, images_root: Path, run_id: int = 1, with_running: bool = True) -> Path:
    """Write the hand-made DB through schema.DDL: run `run_id` complete, plus a run still 'running'."""
    con = duckdb.connect(str(path))
    for ddl in schema.DDL:
        con.execute(ddl)
    con.execute(f"INSERT INTO {schema.META} VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)])
    runs = [(run_id, schema.RUN_COMPLETE, datetime(2024, 5, 1, 12, 30))]
    if with_running:
        runs.append((run_id + 1, schema.RUN_RUNNING, None))
    for rid, status, finished in runs:
        con.execute(
            f"INSERT INTO {schema.RUNS} VALUES (?, ?, 'h', 'bvlc-googlenet', '/weights', ?, '{{}}', ?, 7, 'cpu',"
            " 'float32', ?, ?)",
            [rid, status, "ab" * 32, str(images_root), datetime(2024, 5, 1, 12, 0), finished],
        )
        for position, (layer, units) in enumerate((("conv1", CONV1), ("mixed4c", MIXED4C))):
            con.execute(f"INSERT INTO {schema.LAYERS_TABLE} VALUES (?, ?, ?, ?, ?)",
                        [rid, layer, position, len(units), f"module.{layer}"])
            for unit, values in units.items():
                con.execute(f"INSERT INTO {schema.UNITS} VALUES (?, ?, ?, 'conv')", [rid, layer, unit])
                for image_id, (mean, mx, mn) in enumerate(values):
                    con.execute(f"INSERT INTO {schema.RESPONSES} VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [rid, layer, unit, image_id, mean, mx, mn])
        for image_id, rel, wnid, index, name in IMAGES:
            con.execute(f"INSERT INTO {schema.IMAGES} VALUES (?, ?, ?, ?, ?, ?, 64, 48, 'RGB')",
                        [rid, image_id, rel, wnid, index, name])
        for category, wnids in CATEGORIES.items():
            for wnid in wnids:
                con.execute(f"INSERT INTO {schema.CATEGORIES} VALUES (?, ?, ?)", [rid, category, wnid])
        con.execute(f"INSERT INTO {schema.SKIPPED} VALUES (?, 6, 'n01440764/broken.JPEG', 'truncated JPEG')",
                    [rid])
    # The worker's precomputed SI, for mixed4c/dog only (conv1 is computed on demand).
    for unit, si, top, bottom in EXPECTED_K1000:
        con.execute(f"INSERT INTO {schema.UNIT_SI} VALUES (?, 'mixed4c', 'dog', ?, ?, ?)",
                    [run_id, schema.DEFAULT_SI_STAT, unit, si])
    # ... and mixed4c's ranks, made by the worker's code (in_top/in_bottom for k <= RANKED_K).
    insert_ranks(con, run_id, "mixed4c", schema.RANKED_K)
    con.close()
    return path


def make_settings(db: Path, tmp: Path, **extra: object) -> Settings:
    """Settings for a test server: its own thumbnail cache, templates and static from the repo."""
    return Settings(db=db, thumbnail_dir=tmp / "thumbs", **extra)


def make_hand(root: Path) -> dict[str, Path]:
    """Paths of a new hand-made DB, its image folder and the secrets beside it, under root."""
    images = make_images(root)
    return {"db": build_db(root / "hand.duckdb", images), "images": images, "root": root}


@pytest.fixture
def hand(tmp_path: Path) -> dict[str, Path]:
    """A fresh hand-made DB for a test that changes or replaces it."""
    return make_hand(tmp_path)


@pytest.fixture(scope="module")
def hand_ro(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A hand-made DB shared by a module's tests, which only read it."""
    return make_hand(tmp_path_factory.mktemp("hand"))


@pytest.fixture(scope="module")
def client(hand_ro: dict[str, Path]) -> Iterator[TestClient]:
    """A TestClient over the shared hand-made DB."""
    with TestClient(create_app(make_settings(hand_ro["db"], hand_ro["root"]))) as c:
        yield c


def _table_dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# The DB layer


def test_replaced_file_is_picked_up_without_restart(hand: dict[str, Path], tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(hand["db"], tmp_path))) as c:
        assert c.get("/api/").json()["run"]["run_id"] == 1
        new = build_db(tmp_path / "new.duckdb", hand["images"], run_id=7, with_running=False)
        os.replace(new, hand["db"])
        body = c.get("/api/").json()
        assert body["run"]["run_id"] == 7
        assert [r["run_id"] for r in body["runs"]] == [7]
        assert c.get("/api/layers/mixed4c?run=1").status_code == 404


def test_database_is_opened_read_only_and_never_changed(hand: dict[str, Path], tmp_path: Path) -> None:
    before = _table_dump(hand["db"])
    with TestClient(create_app(make_settings(hand["db"], tmp_path))) as c:
        for url in ("/", "/layers", "/layers/mixed4c?k=2", "/layers/conv1", "/layers/mixed4c/units/0",
                    "/skipped", "/images/0?size=32", "/api/layers/mixed4c.csv?si_stat=mean"):
            assert c.get(url).status_code == 200, url
        db = c.app.state.db
        with db.reader() as reader, pytest.raises(duckdb.Error):
            reader.cursor.execute(f"DELETE FROM {schema.RUNS}")
        with db.reader() as reader, pytest.raises(duckdb.Error):
            reader.cursor.execute("SELECT * FROM read_text(?)", [str(hand["root"] / "secret.txt")])
    assert _table_dump(hand["db"]) == before


def test_missing_database_answers_503_then_recovers(hand: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "later.duckdb"
    with TestClient(create_app(make_settings(target, tmp_path))) as c:
        r = c.get("/healthz")
        assert r.status_code == 503
        assert r.json()["error"]["status"] == 503
        assert c.get("/api/layers").status_code == 503
        assert c.get("/layers").status_code == 503
        shutil.copy(hand["db"], target)
        r = c.get("/healthz")
        assert r.status_code == 200
        assert r.json() == {"status": "ok", "runs": 1, "schema_version": schema.SCHEMA_VERSION}


def test_not_a_database_answers_503(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.duckdb"
    bogus.write_bytes(b"not a duckdb file at all" * 100)
    with TestClient(create_app(make_settings(bogus, tmp_path))) as c:
        for url in ("/healthz", "/api/", "/", "/images/0"):
            r = c.get(url)
            assert r.status_code == 503, url


def test_wrong_schema_version_answers_503(hand: dict[str, Path], tmp_path: Path) -> None:
    con = duckdb.connect(str(hand["db"]))
    con.execute(f"UPDATE {schema.META} SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with TestClient(create_app(make_settings(hand["db"], tmp_path))) as c:
        r = c.get("/healthz")
        assert r.status_code == 503
        assert "999" in r.json()["error"]["detail"]


def test_default_bind_is_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import parse_args

    for key in [k for k in os.environ if k.startswith("UNITSCOPE_")]:
        monkeypatch.delenv(key)
    assert Settings().host == "127.0.0.1"
    assert parse_args(["--db", "x.duckdb"]).host == "127.0.0.1"
    wide = parse_args(["--db", "x.duckdb", "--host", "0.0.0.0", "--port", "9001"])
    assert (wide.host, wide.port) == ("0.0.0.0", 9001)
    monkeypatch.setenv("UNITSCOPE_DB", "/data/u.duckdb")
    monkeypatch.setenv("UNITSCOPE_PORT", "8123")
    env = parse_args([])
    assert (env.db, env.port, env.host) == (Path("/data/u.duckdb"), 8123, "127.0.0.1")
    assert parse_args(["--port", "9002"]).port == 9002  # the flag wins


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--port", "0"], {}, "error: --port: input should be greater than or equal to 1, got '0'"),
        ([], {"UNITSCOPE_PORT": "eighty"}, "error: UNITSCOPE_PORT: input should be a valid integer"),
        ([], {"UNITSCOPE_DB_THREADS": "0"}, "error: UNITSCOPE_DB_THREADS: input should be greater than or equal"),
    ],
)
def test_a_bad_server_setting_is_one_line_naming_it(argv: list[str], env: dict[str, str], expected: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UNITSCOPE_")}
    done = subprocess.run([sys.executable, "-m", "app", *argv], cwd=REPO, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith(expected), done.stderr


def test_cli_help_runs_without_torch() -> None:
    # The server must start without torch; -X importtime is overkill, check sys.modules instead.
    code = "import sys, app.main; app.main.create_app(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    out = subprocess.run([sys.executable, "-m", "app", "--help"], check=True, cwd=REPO, capture_output=True,
                         text=True).stdout
    assert "--db" in out and "--host" in out and "--port" in out


# ---------------------------------------------------------------------------------------------
# A DB written by the real worker on a small spread of the shared sample (skips without ../shared)

REAL_LIMIT = 160


def build_real_db(base: Path, images: Path, weights: Path) -> Path:
    """Run `python -m worker run` once per test session (reused by every module that asks)."""
    db = base / "real-worker" / "real.duckdb"
    if db.exists():
        return db
    db.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "worker", "run", "--images", str(images), "--db", str(db),
           "--model", "bvlc-googlenet", "--weights", str(weights), "--limit", str(REAL_LIMIT),
           "--device", "cpu", "--cache", str(db.parent / "cache")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if done.returncode not in (0, 3):  # 3: completed with skipped files
        raise RuntimeError(f"worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return db


@pytest.fixture(scope="session")
def real_db(tmp_path_factory: pytest.TempPathFactory, imagenet_sample: Path, bvlc_weights: Path) -> Path:
    """A DuckDB file written by the real worker from REAL_LIMIT images of the shared sample, all layers.

    UNITSCOPE_TEST_DB names an existing one instead (e.g. a full run, for the README's screenshots).
    """
    if given := os.environ.get("UNITSCOPE_TEST_DB"):
        return Path(given)
    return build_real_db(tmp_path_factory.getbasetemp(), imagenet_sample, bvlc_weights)


@pytest.fixture(scope="session")
def real_client(real_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A TestClient over the real-worker DB."""
    settings = make_settings(real_db, tmp_path_factory.mktemp("real-thumbs"))
    with TestClient(create_app(settings)) as c:
        yield c


@contextmanager
def serve(app: object) -> Iterator[str]:
    """Run the app under a real uvicorn server on 127.0.0.1 and a free port, in a thread."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_database_without_a_complete_run(tmp_path: Path) -> None:
    # The worker's first run is still going: the file holds its schema and nothing complete.
    db = tmp_path / "empty.duckdb"
    con = duckdb.connect(str(db))
    for ddl in schema.DDL:
        con.execute(ddl)
    con.close()
    with TestClient(create_app(make_settings(db, tmp_path))) as c:
        assert c.get("/api/").json() == {"run": None, "runs": [], "layers": []}
        assert c.get("/api/layers").json() == []
        assert c.get("/api/skipped").json() == {"run_id": None, "count": 0, "files": []}
        for url in ("/", "/layers", "/skipped", "/healthz"):
            assert c.get(url).status_code == 200, url
        for url in ("/layers/mixed4c", "/api/layers/mixed4c/units/0", "/images/0"):
            r = c.get(url)
            assert r.status_code == 404 and "no complete run" in r.text, url


def test_reader_in_flight_keeps_its_file_while_a_new_one_is_served(hand: dict[str, Path], tmp_path: Path) -> None:
    from app.db import Database

    db = Database(make_settings(hand["db"], tmp_path))
    runs_sql = f"SELECT run_id FROM {schema.RUNS} WHERE status = 'complete'"
    with db.reader() as old:
        assert old.rows(runs_sql) == [(1,)]
        os.replace(build_db(tmp_path / "next.duckdb", hand["images"], run_id=5), hand["db"])
        with db.reader() as new:
            assert new.generation is not old.generation
            assert new.rows(runs_sql) == [(5,)]
            assert old.rows(runs_sql) == [(1,)]  # the request in flight still reads its own file
        old_connection = old.generation.connection
    with pytest.raises(duckdb.Error):  # closed once its last request finished
        old_connection.execute("SELECT 1")
    with db.reader() as again:
        assert again.rows(runs_sql) == [(5,)]
    db.close()
