"""Adversarial requests, a DB replaced under load, the default bind, and a schemathesis fuzz.

Promise: no request returns a 500, reads a file outside the image folder, or changes the DB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import duckdb
import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fixtures import (
    REPO,
    Page,
    build_db,
    expected_scores,
    make_images,
    make_settings,
    serve,
    table_dump,
)
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from unitscope import schema

FUZZ_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
               response_schema_conformance]
SECRET_TEXT = b"the server must never send this"


def traversal_payloads(root: Path) -> list[str]:
    """Ways to name a file outside the image folder, raw and percent-encoded."""
    secret_txt, secret_jpg = root / "secret.txt", root / "secret.JPEG"
    raw = ["..", "../..", "../secret.txt", "../../secret.JPEG", "....//....//secret.txt", "..\\..\\secret.txt",
           str(secret_txt), str(secret_jpg), "/etc/passwd", "~/.ssh/id_rsa", "file:///etc/passwd",
           "n02085620/../../secret.JPEG", "..%2f..%2fsecret.txt", "%2e%2e", "%2e%2e%2f%2e%2e%2fsecret.txt",
           "%252e%252e%252fsecret.txt", "..;/secret.txt", "secret.txt\x00.JPEG"]
    # A raw NUL cannot even be sent; its encoded form is.
    return [p for p in raw if "\x00" not in p] + [quote(p, safe="") for p in raw]


def assert_safe(response: httpx.Response, url: str) -> None:
    assert response.status_code < 500, (url, response.status_code, response.text[:300])
    assert SECRET_TEXT not in response.content, url
    assert b"root:x:0:0" not in response.content, url


def test_path_traversal_in_every_parameter_reads_nothing(client: TestClient, hand_ro: dict[str, Path]) -> None:
    secret_jpg = (hand_ro["root"] / "secret.JPEG").read_bytes()
    urls = []
    for p in traversal_payloads(hand_ro["root"]):
        urls += [
            f"/images/{p}", f"/images/{p}?size=64", f"/images/0?size={p}", f"/images/0?run={p}",
            f"/layers/{p}", f"/api/layers/{p}", f"/api/layers/{p}.csv", f"/layers/{p}/units/0",
            f"/api/layers/mixed4c/units/{p}", f"/api/layers/{p}/units/{p}",
            f"/api/layers/mixed4c?category={p}", f"/api/layers/mixed4c?pos_stat={p}", f"/api/layers/mixed4c?k={p}",
            f"/layers/mixed4c/units/0?near_stat={p}&n={p}", f"/api/?run={p}", f"/skipped?run={p}",
            f"/api/layers?threshold={p}", f"/static/{p}", f"/static/../{p}", f"/{p}",
        ]
    for url in urls:
        r = client.get(url)
        assert_safe(r, url)
        assert r.content != secret_jpg, url
    # Image 5 is a symlink inside the folder that points at secret.JPEG: refused.
    r = client.get("/images/5")
    assert r.status_code == 404 and r.content != secret_jpg
    assert client.get("/images/5?size=64").status_code == 404


def test_static_files_stay_in_static(client: TestClient) -> None:
    for url in ("/static/../app/config.py", "/static/%2e%2e/app/config.py", "/static/..%2fapp%2fconfig.py",
                "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert b"Settings" not in r.content
    assert client.get("/static/style.css").status_code == 200


def test_stored_paths_escaping_the_folder_are_refused(hand: dict[str, Path], tmp_path: Path) -> None:
    # A hostile or corrupt DB: image paths that climb out of images_root or are absolute.
    con = duckdb.connect(str(hand["db"]))
    con.execute(f"UPDATE {schema.IMAGES} SET path = '../secret.JPEG' WHERE image_id = 0")
    con.execute(f"UPDATE {schema.IMAGES} SET path = ? WHERE image_id = 1", [str(hand["root"] / "secret.txt")])
    con.execute(f"UPDATE {schema.IMAGES} SET path = '' WHERE image_id = 2")
    con.execute(f"UPDATE {schema.IMAGES} SET path = 'n02085620' WHERE image_id = 3")  # a folder
    con.close()
    with TestClient(create_app(make_settings(hand["db"], tmp_path))) as c:
        for image_id in (0, 1, 2, 3):
            for suffix in ("", "?size=64"):
                r = c.get(f"/images/{image_id}{suffix}")
                assert r.status_code == 404, (image_id, suffix)
                assert_safe(r, str(image_id))


@pytest.mark.parametrize("name", [
    "mixed4c'; DROP TABLE runs; --", "' OR '1'='1", '"; DELETE FROM images; --', "mixed4c\\", "%", "_",
    "mixed4c' UNION SELECT * FROM runs --", "$layer", "?", "∑ünïcødé", "a" * 100,
])
def test_sql_metacharacters_in_names_are_just_unknown_names(client: TestClient, hand_ro: dict[str, Path],
                                                            name: str) -> None:
    before = table_dump(hand_ro["db"])
    q = quote(name, safe="")
    for url in (f"/api/layers/{q}", f"/layers/{q}", f"/api/layers/{q}/units/0", f"/api/layers/{q}.csv",
                f"/api/layers/mixed4c?category={q}", f"/api/layers?category={q}",
                f"/layers/mixed4c/units/0?category={q}"):
        r = client.get(url)
        assert r.status_code == 404, (url, r.status_code)
    assert client.get("/api/layers/mixed4c?k=2").status_code == 200
    assert table_dump(hand_ro["db"]) == before


def test_a_category_named_with_sql_metacharacters_works(hand: dict[str, Path], tmp_path: Path) -> None:
    name = "dogs'; DROP TABLE runs; --"
    con = duckdb.connect(str(hand["db"]))
    con.execute(f"INSERT INTO {schema.CATEGORIES} VALUES (1, ?, 'n02085620')", [name])
    con.close()
    with TestClient(create_app(make_settings(hand["db"], tmp_path))) as c:
        body = c.get(f"/api/layers/mixed4c?k=2&category={quote(name, safe='')}").json()
        assert body["category"] == name
        # The category holds exactly the dog WNID, so it scores as dog does.
        assert [(u["unit"], u["in_top"], u["in_bottom"]) for u in body["units"]] == [
            (u, top, bottom) for u, _, top, bottom in expected_scores("mixed4c", "dog", k=2)]
        page = c.get(f"/layers/mixed4c?category={quote(name, safe='')}")
        assert page.status_code == 200
        # The name comes back as the chosen option's value and text, whole: escaped, not read as markup.
        chosen = Page(page.text).one("select", name="category").one("option", selected=True)
        assert chosen.get("value") == name and chosen.text == name


@pytest.mark.parametrize("url", [
    "/api/layers/mixed4c?k=1000000", "/api/layers/mixed4c?k=2147483648", "/api/layers/mixed4c/units/0?n=1000000",
    "/api/layers?k=100000000", "/layers/mixed4c/units/0?n=9999", "/images/0?size=100000",
    "/api/layers/mixed4c/units/-3", "/api/layers/mixed4c/units/0x10", "/api/layers/mixed4c/units/1e3",
    "/images/-7", "/images/1.0", "/images/0?run=-2", "/api/layers/mixed4c?pos_stat=max;DROP",
    "/api/layers/mixed4c?si_stat=act_max", "/api/layers/mixed4c?neg_stat=min%20OR%201=1",
])
def test_huge_negative_and_malformed_values_are_422(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 422, (url, r.status_code)
    if r.headers["content-type"] == "application/json":
        assert r.json()["error"]["status"] == 422
    else:
        assert Page(r.text).one("div", cls="error-box").one("h1").text.startswith("422 · ")


def test_db_replaced_under_load_no_error_and_new_run_visible(hand: dict[str, Path], tmp_path: Path) -> None:
    app = create_app(make_settings(hand["db"], tmp_path))
    urls = ["/api/", "/api/layers", "/api/layers/mixed4c?k=2", "/api/layers/conv1?si_stat=mean",
            "/api/layers/mixed4c/units/1?n=3", "/layers/mixed4c", "/layers/mixed4c/units/0", "/layers", "/",
            "/api/skipped", "/healthz"]
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    stop = threading.Event()
    seen_runs: set[int] = set()

    def hammer(base: str, offset: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            i = offset
            while not stop.is_set():
                url = urls[i % len(urls)]
                i += 1
                try:
                    r = http.get(url)
                except httpx.HTTPError as exc:  # a dropped connection is a failure too
                    failures.append(f"{url}: {exc!r}")
                    continue
                statuses[r.status_code] += 1
                if r.status_code != 200:
                    failures.append(f"{url}: {r.status_code} {r.text[:200]}")
                elif url == "/api/":
                    seen_runs.add(r.json()["run"]["run_id"])

    with serve(app) as base:
        threads = [threading.Thread(target=hammer, args=(base, k)) for k in range(4)]
        for t in threads:
            t.start()
        try:
            for run_id in (7, 8, 9, 10):
                time.sleep(0.4)
                fresh = build_db(tmp_path / f"next-{run_id}.duckdb", hand["images"], run_id=run_id)
                os.replace(fresh, hand["db"])  # how the worker publishes
            time.sleep(0.6)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        final = httpx.get(base + "/api/", timeout=10).json()
    assert not failures, failures[:5]
    assert sum(statuses.values()) > 50 and set(statuses) == {200}
    assert final["run"]["run_id"] == 10 and [r["run_id"] for r in final["runs"]] == [10]
    assert len(seen_runs) >= 3  # the runs in between were served as they came


def test_default_bind_is_loopback_only(hand: dict[str, Path], tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "UNITSCOPE_THUMBNAIL_DIR": str(tmp_path / "thumbs")}
    env.pop("UNITSCOPE_HOST", None)
    proc = subprocess.Popen([sys.executable, "-m", "app", "--db", str(hand["db"]), "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        # The listening socket is bound to 127.0.0.1 (0100007F in /proc/net/tcp), not 0.0.0.0.
        listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A"]
        assert f"0100007F:{port:04X}" in listening
        assert f"00000000:{port:04X}" not in listening
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert f"http://127.0.0.1:{port}" in out


# ---------------------------------------------------------------------------------------------
# Fuzzing the OpenAPI schema (every route, HTML pages included) against a real DB


@pytest.fixture
def fuzz_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FastAPI]:
    """The app over the real-worker DB when ../shared is there, else over the hand-made DB."""
    try:
        db = request.getfixturevalue("real_db")
    except pytest.skip.Exception:
        db = build_db(tmp_path / "fuzz.duckdb", make_images(tmp_path))
    with TestClient(create_app(make_settings(db, tmp_path))) as c:  # runs the lifespan
        yield c.app  # type: ignore[misc]


# Examples per operation and mode: enough to hit every parameter's edges, well under a minute in all.
FUZZ_EXAMPLES = 20


def test_fuzz_openapi_no_server_error(fuzz_app: FastAPI) -> None:
    """Every operation of /openapi.json, with valid and invalid inputs: never a 5xx, errors in one shape.

    Driven through schemathesis' Python API (not its pytest plugin, whose lazy fixtures do not
    work with this pytest), with the responses also checked against the documented schema.
    """
    api = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 12
    calls: Counter[int] = Counter()
    timings: dict[str, float] = {}
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case) -> None:
                response = case.call()
                calls[response.status_code] += 1
                assert response.status_code < 500, (case.path, case.path_parameters, case.query,
                                                    response.status_code, response.text[:300])
                if response.status_code >= 400 and "json" in response.headers.get("content-type", [""])[0]:
                    body = response.json()
                    assert set(body) == {"error"} and set(body["error"]) == {"status", "title", "detail"}
                case.validate_response(response, checks=FUZZ_CHECKS)

            started = time.perf_counter()
            try:
                check()
            except Unsatisfiable:
                assert mode == schemathesis.GenerationMode.NEGATIVE  # nothing to get wrong: no parameters
            timings[f"{mode.value} {operation.label}"] = time.perf_counter() - started
    print("fuzz seconds:", {k: round(v, 1) for k, v in timings.items()})
    assert calls[200] > 0 and calls[422] > 0 and not any(code >= 500 for code in calls)
