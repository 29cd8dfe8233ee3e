"""Safe defaults of the server (issue 21, section 3): one test per defect found by trying it as an outsider."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures import Page, make_settings
from hand_run import publish_mixed4c_run

from app.config import parse_args
from app.main import create_app
from app.params import THUMB_SIZES
from unitscope import schema
from worker.categories import builtin_category


def test_thumbnails_are_made_at_a_few_fixed_sizes(hand: dict[str, Path], tmp_path: Path) -> None:
    """Every size from 16 to 512 asked of one image leaves at most len(THUMB_SIZES) files in the cache."""
    with TestClient(create_app(make_settings(hand["db"], tmp_path))) as c:
        bodies = {size: c.get(f"/images/0?size={size}") for size in range(16, 513, 7)}
        assert all(r.status_code == 200 for r in bodies.values())
        # 16 and 64 are both made at 64: the same bytes, the same validator.
        assert c.get("/images/0?size=16").content == c.get("/images/0?size=64").content
        assert c.get("/images/0?size=16").headers["etag"] == c.get("/images/0?size=64").headers["etag"]
        assert c.get("/images/0?size=65").headers["etag"] != c.get("/images/0?size=64").headers["etag"]
    cached = list((tmp_path / "thumbs").rglob("*.jpg"))
    assert 1 < len(cached) <= len(THUMB_SIZES)


HEADER_BYTES, BLOCK_BYTES = 3 * 4096, 262_144  # DuckDB's file: three header pages, then fixed-size blocks


def _damage_table(db: Path, table: str) -> int:
    """Overwrite 2 KiB inside every block that holds `table` alone (its checksum then fails); returns the count."""
    with duckdb.connect(str(db), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        blocks = {t: {r[0] for r in con.execute(
            f"SELECT DISTINCT block_id FROM pragma_storage_info('{t}') WHERE block_id >= 0").fetchall()} for t in tables}
    own = blocks[table] - set().union(*(b for t, b in blocks.items() if t != table))
    with db.open("r+b") as f:
        for block in own:
            f.seek(HEADER_BYTES + block * BLOCK_BYTES + 64)
            f.write(bytes(range(256)) * 8)
    return len(own)


def test_a_database_damaged_in_place_gives_503_and_healthz_notices(tmp_path: Path) -> None:
    """The blocks of unit_rows, which unit pages read, damaged on disk: their pages answer 503, not 500, and
    /healthz, which said ok, says the file cannot be read once a request met the damage."""
    rng = np.random.default_rng(0)
    wnids = tuple(w for w in ("n02085620", "n01440764", "n01443537") for _ in range(300))
    db = tmp_path / "d.duckdb"
    publish_mixed4c_run(db, rng.normal(0, 1, (len(wnids), 256, 3)).astype(np.float32), wnids,
                        (builtin_category("dog"),))
    assert _damage_table(db, schema.UNIT_ROWS) > 0
    # A server that serves at once (no reading ahead: app.warm) finds the damage on the first request that reads it.
    with TestClient(create_app(make_settings(db, tmp_path, lazy=True)), raise_server_exceptions=False) as c:
        assert c.get("/healthz").status_code == 200
        codes = {c.get(f"/api/layers/mixed4c/units/{u}").status_code for u in range(0, 256, 16)}
        assert 503 in codes and 500 not in codes  # a unit whose rows share a block with another table reads fine
        health = c.get("/healthz")
        assert health.status_code == 503 and "cannot be read" in health.json()["error"]["detail"]
    # One that reads each layer's tables before serving (the default) knows before its first request.
    with TestClient(create_app(make_settings(db, tmp_path)), raise_server_exceptions=False) as c:
        health = c.get("/healthz")
        assert health.status_code == 503 and "cannot be read" in health.json()["error"]["detail"]


def test_integer_bounds_are_published_as_minimum_and_maximum(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    text = json.dumps(spec)
    assert '"ge"' not in text and '"le"' not in text
    params = {p["name"]: p["schema"] for p in spec["paths"]["/api/layers/{layer}"]["get"]["parameters"]}
    k = next(s for s in params["k"]["anyOf"] if s.get("type") == "integer")
    assert (k["minimum"], k["maximum"]) == (1, 10_000)
    image = {p["name"]: p["schema"] for p in spec["paths"]["/images/{image_id}"]["get"]["parameters"]}
    assert (image["image_id"]["minimum"], image["image_id"]["maximum"]) == (0, 2**31 - 1)
    # The bounds still hold.
    assert client.get("/api/layers/mixed4c?k=0").status_code == 422
    assert client.get("/api/layers/mixed4c?k=1.0").status_code == 422


def test_the_db_cannot_choose_which_files_are_served(hand: dict[str, Path], tmp_path: Path) -> None:
    """A DB saying its images live at / with a path etc/hostname: served only if the operator allows /."""
    con = duckdb.connect(str(hand["db"]))
    con.execute(f"UPDATE {schema.RUNS} SET images_root = '/'")
    con.execute(f"UPDATE {schema.IMAGES} SET path = 'etc/hostname' WHERE image_id = 3")
    con.close()
    with TestClient(create_app(make_settings(hand["db"], tmp_path, image_roots=(hand["images"],)))) as c:
        r = c.get("/images/3")
        assert r.status_code == 404 and "image roots" in r.json()["error"]["detail"]
        assert Path("/etc/hostname").read_bytes() not in r.content
        # The runs page says so, and how to start the server, where thumbnails would otherwise just break.
        notice = c.get("/api/").json()["image_notice"]
        assert "run 1's images are in /, which this server does not serve" in notice and "--image-roots /" in notice
        assert Page(c.get("/").text).by_id("image-notice").text == f"⚠ {notice}"
    with TestClient(create_app(make_settings(hand["db"], tmp_path, image_roots=(Path("/"),)))) as c:
        assert c.get("/images/3").content == Path("/etc/hostname").read_bytes()  # the operator's choice
        assert c.get("/api/").json()["image_notice"] is None
        assert not Page(c.get("/").text).find_all(id="image-notice")


def test_images_root_moves_the_folder_where_image_roots_only_allows(hand: dict[str, Path], tmp_path: Path) -> None:
    """Two settings, not two spellings: --images-root replaces every run's recorded folder (the files moved),
    --image-roots allows recorded folders and moves nothing."""
    moved = tmp_path / "moved"
    shutil.copytree(hand["images"], moved)
    with duckdb.connect(str(hand["db"])) as con:
        con.execute(f"UPDATE {schema.RUNS} SET images_root = '/where/the/worker/was'")
        (path,) = con.execute(f"SELECT path FROM {schema.IMAGES} WHERE image_id = 0").fetchone()
    with TestClient(create_app(make_settings(hand["db"], tmp_path, image_roots=(moved,)))) as c:
        r = c.get("/images/0")  # allowing the new folder does not send the recorded one there
        assert r.status_code == 404 and "image roots" in r.json()["error"]["detail"]
    with TestClient(create_app(make_settings(hand["db"], tmp_path, image_roots=(), images_root=moved))) as c:
        assert c.get("/images/0").content == (moved / path).read_bytes()  # the operator named it: no allow-list
        assert c.get("/api/").json()["image_notice"] is None
    settings = parse_args(["--images-root", str(moved), "--image-roots", "/a", "/b"])
    assert (settings.images_root, settings.image_roots) == (moved, (Path("/a"), Path("/b")))


def test_an_unknown_host_is_refused_and_every_answer_carries_security_headers(client: TestClient) -> None:
    for host in ("evil.example", "127.0.0.1.evil.example", "attacker.test:8000"):
        r = client.get("/healthz", headers={"host": host})
        assert r.status_code == 400, host
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "testserver"):
        assert client.get("/healthz", headers={"host": host}).status_code == 200, host
    for url in ("/layers/mixed4c", "/api/layers/mixed4c", "/static/style.css", "/no/such/page", "/images/0?size=64"):
        r = client.get(url)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp, url
        assert (r.headers["x-content-type-options"], r.headers["referrer-policy"]) == ("nosniff", "no-referrer"), url
    # Swagger UI starts with an inline script: /docs alone allows one.
    assert "script-src 'self' 'unsafe-inline'" in client.get("/docs").headers["content-security-policy"]


@pytest.mark.parametrize("url", ["/healthz", "/layers/mixed4c", "/api/layers/mixed4c", "/static/style.css",
                                 "/images/0?size=64", "/api/layers/mixed4c.csv"])
def test_head_answers_wherever_get_does(client: TestClient, url: str) -> None:
    get, head = client.get(url), client.head(url)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]


def test_a_503_does_not_show_where_the_database_lives(tmp_path: Path) -> None:
    hidden = tmp_path / "private" / "folder"
    hidden.mkdir(parents=True)
    (hidden / "bad.duckdb").write_bytes(b"not a database at all" * 100)
    for name in ("missing.duckdb", "bad.duckdb"):
        with TestClient(create_app(make_settings(hidden / name, tmp_path))) as c:
            r = c.get("/healthz")
            assert r.status_code == 503 and name in r.text, name
            assert str(tmp_path) not in r.text and "private" not in r.text, r.text


def test_a_duckdb_file_without_a_schema_version_is_not_served(hand: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(hand["db"], copy)
    with duckdb.connect(str(copy)) as con:
        con.execute(f"DROP TABLE {schema.META}")
    with TestClient(create_app(make_settings(copy, tmp_path))) as c:
        r = c.get("/healthz")
        assert r.status_code == 503 and "not a unitscope database" in r.json()["error"]["detail"]
