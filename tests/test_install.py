"""A real install from the wheel: built offline, installed into a fresh venv, served from another folder.

The fresh venv borrows the test venv's dependencies through a .pth file (pip never reaches the
registry); only unitscope itself is installed from the wheel, so a file the wheel lacks shows up here.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures import clean_env, make_hand

REPO = Path(__file__).resolve().parent.parent
# What a source tree holds besides the project: never part of a build.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "test-output", "*.duckdb*",
    "tests", "bench", ".hypothesis", ".ruff_cache",
)


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, **kwargs)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built offline from a copy of the source tree (no stale build/ of the checkout)."""
    base = tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, base / "src", ignore=NOT_SOURCE, symlinks=True)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "--wheel-dir", base / "dist", base / "src")  # fmt: skip
    [built] = (base / "dist").glob("unitscope-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; dependencies come from the test venv's site-packages."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # Appended after the venv's own site-packages, so the installed unitscope wins over any checkout.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: never touch the test venv's own (editable) unitscope.
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", wheel, env=clean_env())
    return venv


def test_the_wheel_holds_every_module_and_the_pages(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(REPO).as_posix() for package in ("unitscope", "app", "worker") for p in (REPO / package).rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    pages = {f"app/templates/{p.name}" for p in (REPO / "templates").glob("*.html")}
    assert pages and pages <= names
    for name in ("app/static/plotly.min.js", "app/static/app.js", "app/static/style.css", "app/static/favicon.svg",
                 "app/static/swagger-ui/swagger-ui-bundle.js", "app/static/swagger-ui/swagger-ui.css",
                 "worker/categories/dog.txt", "worker/categories/imagenet1k.txt",
                 "worker/categories/imagenet1k_isa.tsv"):  # fmt: skip
        assert name in names, name
    # Nothing at the top level of site-packages but the three packages and the metadata.
    assert {n.split("/")[0] for n in names} == {"unitscope", "app", "worker", "unitscope-0.1.0.dist-info"}
    entry_points = zipfile.ZipFile(wheel).read("unitscope-0.1.0.dist-info/entry_points.txt").decode()
    assert "unitscope-worker = worker.__main__:main" in entry_points  # the allocator settings, then the CLI
    assert "unitscope-server = app.__main__:main" in entry_points


@pytest.fixture(scope="module")
def server(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`unitscope-server` from the fresh venv, started in an unrelated folder, over a small hand-made DB."""
    hand = make_hand(tmp_path_factory.mktemp("hand"))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = clean_env(XDG_CACHE_HOME=str(elsewhere / "cache"))
    log = (elsewhere / "server.log").open("w")
    process = subprocess.Popen([venv / "bin" / "unitscope-server", "--db", hand["db"], "--port", str(port)],
                               cwd=elsewhere, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the installed server did not start:\n{(elsewhere / 'server.log').read_text()}")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def get(url: str) -> tuple[int, str]:
    """Status and body (as text; binary bodies are decoded leniently)."""
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def test_the_installed_code_runs_not_the_checkout(venv: Path, tmp_path: Path) -> None:
    code = "import app, worker; print(app.__file__); print(worker.__file__)"
    files = run(venv / "bin" / "python", "-c", code, cwd=tmp_path, env=clean_env()).stdout.split()
    assert all(Path(f).is_relative_to(venv) for f in files), files


def test_the_installed_server_serves_pages_static_files_and_the_api(server: str) -> None:
    for path in ("/", "/layers", "/layers/mixed4c", "/api/layers", "/static/style.css", "/openapi.json"):
        status, _ = get(server + path)
        assert status == 200, path
    status, plotly = get(server + "/static/plotly.min.js")
    assert status == 200 and plotly.startswith("//# allFunctionsCalledOnLoad\n/**\n* plotly.js v")
    assert get(server + "/favicon.ico")[0] == 200


def test_docs_work_offline(server: str) -> None:
    status, html = get(server + "/docs")
    assert status == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ['"]([^'"]+)['"]""", html)
    urls = [a or b for a, b in urls]
    assert "/openapi.json" in urls and any(u.split("?")[0].endswith("swagger-ui-bundle.js") for u in urls), urls
    assert not re.search(r"https?://", html), "the /docs page names an outside URL"
    for url in urls:
        assert url.startswith("/"), url
        status, body = get(server + url)
        assert status == 200 and body, url
    assert get(server + "/redoc")[0] == 404  # ReDoc loads from a CDN: not offered


def test_the_console_scripts_and_modules_answer_help(venv: Path, tmp_path: Path) -> None:
    worker_help = run(venv / "bin" / "unitscope-worker", "run", "--help", cwd=tmp_path, env=clean_env()).stdout
    assert "--images" in worker_help and "UNITSCOPE_LAYERS" in worker_help
    server_help = run(venv / "bin" / "python", "-m", "app", "--help", cwd=tmp_path, env=clean_env()).stdout
    assert "--db" in server_help and "UNITSCOPE_PORT" in server_help
