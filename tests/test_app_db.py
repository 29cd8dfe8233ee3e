"""The DB layer: read-only access, a file replaced or missing or foreign, and requests in flight across files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient
from fixtures import REPO, Page, build_db, make_settings, table_dump

from app.config import Settings
from app.main import create_app
from unitscope import schema


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
    before = table_dump(hand["db"])
    with TestClient(create_app(make_settings(hand["db"], tmp_path))) as c:
        for url in ("/", "/layers", "/layers/mixed4c?k=2", "/layers/conv1", "/layers/mixed4c/units/0",
                    "/skipped", "/images/0?size=32", "/api/layers/mixed4c.csv?si_stat=mean"):
            assert c.get(url).status_code == 200, url
        db = c.app.state.db
        with db.reader() as reader, pytest.raises(duckdb.Error):
            reader.cursor.execute(f"DELETE FROM {schema.RUNS}")
        with db.reader() as reader, pytest.raises(duckdb.Error):
            reader.cursor.execute("SELECT * FROM read_text(?)", [str(hand["root"] / "secret.txt")])
    assert table_dump(hand["db"]) == before


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
        assert "999" in r.json()["error"]["detail"] and "derive" not in r.json()["error"]["detail"]
    # An older version (the one before labels) is one `derive` away, and the message says so.
    with duckdb.connect(str(hand["db"])) as con:
        con.execute(f"UPDATE {schema.META} SET value = '5' WHERE key = 'schema_version'")
    with TestClient(create_app(make_settings(hand["db"], tmp_path))) as c:
        assert "python -m worker derive --db FILE" in c.get("/healthz").json()["error"]["detail"]


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


def test_database_without_a_complete_run(tmp_path: Path) -> None:
    # The worker's first run is still going: the file holds its schema and nothing complete.
    db = tmp_path / "empty.duckdb"
    con = duckdb.connect(str(db))
    for ddl in schema.DDL:
        con.execute(ddl)
    con.execute(f"INSERT INTO {schema.META} VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)])
    con.close()
    with TestClient(create_app(make_settings(db, tmp_path))) as c:
        assert c.get("/api/").json() == {"run": None, "runs": [], "layers": [], "image_notice": None}
        assert c.get("/api/layers").json() == []
        assert c.get("/api/skipped").json() == {"run_id": None, "count": 0, "files": []}
        for url in ("/", "/layers", "/skipped", "/healthz"):
            assert c.get(url).status_code == 200, url
        page = c.get("/layers/mixed4c")  # a page: the error page, in HTML
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert "no complete run" in Page(page.text).one("div", cls="error-box").find_all("p")[0].text
        for url in ("/api/layers/mixed4c/units/0", "/images/0"):  # JSON
            r = c.get(url)
            assert r.status_code == 404 and "no complete run" in r.text, url


def test_reader_in_flight_keeps_its_file_while_a_new_one_is_served(hand: dict[str, Path], tmp_path: Path) -> None:
    from app.data.db import Database

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
