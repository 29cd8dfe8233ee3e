"""docker compose up for real: the server image built from the Dockerfile and run under compose (its host-network
variant, compose.host.yaml) on a DB made outside Docker: it turns healthy, its pages answer, and a DB replaced in
the volume (by a rename, as the worker publishes) is served without a 5xx.

An engine is started when none runs, and python:3.11-slim is a debootstrap stand-in when it cannot be pulled
(tests/docker_engine.py); the test skips, saying why, only where no engine can be had. Its figures are printed
into the test output (CI's log).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from docker_engine import (
    NoEngine,
    base_image,
    compose_cli,
    engine,
    extra_ca_certificates,
)
from fixtures import REPO, build_db, make_images

PROJECT = "unitscope-compose-test"
pytestmark = pytest.mark.timeout(1500)


def say(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[compose] {line}", end="")


@pytest.fixture(scope="module")
def docker() -> str:
    try:
        return engine()
    except NoEngine as why:
        pytest.skip(f"no Docker engine: {why}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    assert result.returncode == 0, f"{' '.join(args[:6])}…: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result.stdout


def publish(docker: str, db: Path) -> None:
    """Put `db` into the compose volume as the worker does: a copy beside the file, then a rename over it."""
    run(docker, "run", "--rm", "--network", "none", "--user", "0", "-v", f"{db.parent}:/src:ro",
        "-v", f"{PROJECT}_db:/data", "--entrypoint", "sh", "unitscope-server", "-c",
        f"cp /src/{db.name} /data/.incoming && chown 10001:10001 /data/.incoming "
        "&& mv /data/.incoming /data/unitscope.duckdb")


def wait_for(condition: object, limit_s: float, what: str) -> float:
    t0 = time.monotonic()
    while True:
        try:
            if condition():  # type: ignore[operator]
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        assert time.monotonic() - t0 < limit_s, f"{what}: not within {limit_s:.0f} s"
        time.sleep(0.2)


def test_server_image_under_compose_serves_and_follows_a_replaced_db(
        docker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    how = base_image(docker)
    say(capsys, f"engine: {run(docker, 'version', '--format', '{{.Server.Version}}').strip()}; "
                f"python:3.11-slim: {how} ({time.monotonic() - t0:.0f} s)")
    images = make_images(tmp_path)
    # The DBs record the folder as the containers see it, so that the server serves their images.
    dbs = tmp_path / "dbs"
    dbs.mkdir()
    first = build_db(dbs / "first.duckdb", Path("/images"), run_id=1)
    second = build_db(dbs / "second.duckdb", Path("/images"), run_id=2)
    port = free_port()
    env = {**os.environ, "UNITSCOPE_IMAGES_DIR": str(images), "UNITSCOPE_PORT": str(port),
           "UNITSCOPE_CA_CERT": extra_ca_certificates(), "COMPOSE_PROJECT_NAME": PROJECT}
    compose = [*compose_cli(docker), "-f", "compose.yaml", "-f", "compose.host.yaml"]
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        run(*compose, "build", "server", env=env)
        size = int(run(docker, "image", "inspect", "unitscope-server", "--format", "{{.Size}}"))
        say(capsys, f"server image built in {time.monotonic() - t0:.0f} s, {size / 1e6:.0f} MB")

        publish(docker, first)
        t0 = time.monotonic()
        run(*compose, "up", "-d", "server", env=env)
        answering = wait_for(lambda: httpx.get(base + "/healthz", timeout=5).status_code == 200, 120, "/healthz")
        container = run(*compose, "ps", "-q", "server", env=env).strip()
        healthy = wait_for(lambda: run(docker, "inspect", "--format", "{{.State.Health.Status}}", container).strip()
                           == "healthy", 120, "compose's healthcheck")
        say(capsys, f"/healthz 200 after {answering:.1f} s; the container healthy after {healthy:.1f} s")

        pages = ["/", "/api/", "/layers", "/layers/mixed4c", "/api/layers/mixed4c/units/0", "/layers/mixed4c/units/0",
                 "/claims", "/images/0?size=64", "/openapi.json", "/docs"]
        for path in pages:
            response = httpx.get(base + path, timeout=60)
            assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
        assert httpx.get(base + "/api/", timeout=10).json()["run"]["run_id"] == 1

        # The DB replaced in the volume while clients keep asking.
        statuses: Counter[int] = Counter()
        failures: list[str] = []
        stop = threading.Event()

        def poll(offset: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                i = offset
                while not stop.is_set():
                    path = pages[i % len(pages)]
                    i += 1
                    try:
                        status = client.get(path).status_code
                    except httpx.HTTPError as exc:
                        failures.append(f"{path}: {exc!r}")
                        continue
                    statuses[status] += 1
                    if status >= 500:
                        failures.append(f"{path}: {status}")

        pollers = [threading.Thread(target=poll, args=(k,)) for k in range(3)]
        for p in pollers:
            p.start()
        try:
            time.sleep(1)
            publish(docker, second)
            swapped = wait_for(lambda: httpx.get(base + "/api/", timeout=10).json()["run"]["run_id"] == 2, 60,
                               "the replaced DB")
            time.sleep(1)
        finally:
            stop.set()
            for p in pollers:
                p.join(timeout=60)
        say(capsys, f"DB replaced in the volume: served after {swapped:.1f} s; {sum(statuses.values())} polls, "
                    f"statuses {dict(statuses)}")
        assert not failures, failures[:5]
        assert sum(statuses.values()) > 20 and set(statuses) == {200}
    finally:
        logs = subprocess.run([*compose, "logs", "--no-color", "--tail", "30", "server"], capture_output=True,
                              text=True, env=env, cwd=REPO).stdout
        subprocess.run([*compose, "down", "-v", "--remove-orphans"], capture_output=True, env=env, cwd=REPO,
                       timeout=300)
        if any(code >= 500 for code in locals().get("statuses", {})):
            print(logs)
