"""A Docker engine and a python:3.11-slim base for the compose test and bench/compose_stack.py.

Where no engine runs, one is started as the deployment docs say for a machine without a bridge network
(`dockerd --bridge=none --iptables=false --ip6tables=false`: nothing listens beyond its unix socket).
Where python:3.11-slim cannot be pulled (offline), a stand-in is built: a minimal Debian bookworm with
Python 3.11, venv, pip and the CA certificates (debootstrap from Debian's packages), imported under that
tag and labelled as a stand-in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

BASE = "python:3.11-slim"
STAND_IN_LABEL = "org.unitscope.stand-in=debootstrap-bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# The CA certificates this machine adds to the system's (e.g. a TLS-intercepting proxy's): the builds' pip
# must trust them too, through the Dockerfile's CA_CERT, as a user behind such a proxy does.
LOCAL_CAS = Path("/usr/local/share/ca-certificates")


class NoEngine(Exception):
    """No Docker engine runs here and none can be started; str() says why."""


def _run(*args: str, timeout: float = 600, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=check, **kwargs)  # type: ignore


def _answers(docker: str) -> bool:
    try:
        return _run(docker, "info", timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def engine(log: Path | None = None) -> str:
    """The docker CLI's path, with an engine answering it: the running one, or one started now."""
    docker = shutil.which("docker")
    if docker is None:
        raise NoEngine("no docker CLI (apt-get install docker.io)")
    if _answers(docker):
        return docker
    dockerd = shutil.which("dockerd") or ("/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None)
    if dockerd is None:
        raise NoEngine("no engine runs and there is no dockerd to start (apt-get install docker.io)")
    if os.geteuid() != 0:
        raise NoEngine("no engine runs, and starting dockerd needs root")
    log = log or Path(tempfile.gettempdir()) / "unitscope-dockerd.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([dockerd, "--bridge=none", "--iptables=false", "--ip6tables=false"],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _answers(docker):
            return docker
        if process.poll() is not None:
            break
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-1500:]
    raise NoEngine(f"dockerd did not start (exit {process.poll()}): {tail}")


def extra_ca_certificates() -> str:
    """The PEM text of this machine's added CA certificates ('' when it adds none)."""
    if not LOCAL_CAS.is_dir():
        return ""
    return "\n".join(p.read_text().strip() for p in sorted(LOCAL_CAS.glob("*.crt")))


def base_image(docker: str) -> str:
    """Make sure python:3.11-slim exists: present, pulled, or a debootstrap stand-in. Returns how it came."""
    if _run(docker, "image", "inspect", BASE, check=False).returncode == 0:
        return "present"
    try:
        if _run(docker, "pull", BASE, timeout=300, check=False).returncode == 0:
            return "pulled"
    except subprocess.TimeoutExpired:
        pass
    debootstrap = shutil.which("debootstrap") or ("/usr/sbin/debootstrap"
                                                   if Path("/usr/sbin/debootstrap").exists() else None)
    if debootstrap is None:
        raise NoEngine(f"{BASE} cannot be pulled and there is no debootstrap to build a stand-in "
                       "(apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="unitscope-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _run(debootstrap, "--variant=minbase", "--include=python3.11,python3.11-venv,python3-pip,ca-certificates",
             "bookworm", str(root), DEBIAN_MIRROR, timeout=900)
        for cache in (root / "var/cache/apt/archives", root / "var/lib/apt/lists"):
            for item in cache.glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [docker, "import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--change", f"LABEL {STAND_IN_LABEL}", "--change", 'CMD ["python3.11"]', "-", BASE],
            stdin=tar.stdout, capture_output=True, text=True, timeout=600)
        tar.wait()
        if imported.returncode != 0:
            raise RuntimeError(f"docker import failed: {imported.stderr}")
    return "stand-in (debootstrap)"


def compose_cli(docker: str) -> list[str]:
    """Debian's docker-compose (1.29) when installed, else the CLI's compose plugin."""
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    if _run(docker, "compose", "version", check=False).returncode == 0:
        return [docker, "compose"]
    raise NoEngine("no Compose (apt-get install docker-compose)")
