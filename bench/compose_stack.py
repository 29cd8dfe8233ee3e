"""The whole stack under docker compose, as a new user runs it: the CPU worker on a small folder, the server,
then a second worker run that replaces the DB while the server answers.

Uses the host-network variant (compose.host.yaml), so it runs on an engine without a bridge network; starts
the engine and builds a python:3.11-slim stand-in where needed (tests/docker_engine.py). Prints the time of
each step, the images' sizes and what the builds downloaded (bytes received on this machine's non-loopback
interfaces while they ran). Leaves the images in place, removes the containers and volumes.

    .venv/bin/python bench/compose_stack.py --images ../shared/data/imagenet-sample \
        --weights ../shared/models/bvlc_googlenet --limit 40
    # where torch's CPU index cannot be reached, name another (a mirror), or leave it out:
    .venv/bin/python bench/compose_stack.py ... --torch-index http://127.0.0.1:8900/simple
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the engine and base-image helpers the compose test uses
from docker_engine import base_image, compose_cli, engine, extra_ca_certificates  # noqa: E402

PROJECT = "unitscope-stack-bench"


def received_bytes() -> int:
    """Bytes received so far on every interface but loopback (/proc/net/dev)."""
    total = 0
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        name, data = line.split(":", 1)
        if name.strip() != "lo":
            total += int(data.split()[0])
    return total


def run(args: Sequence[str], env: dict[str, str]) -> float:
    """Run a command, failing loudly; its seconds."""
    t0 = time.monotonic()
    result = subprocess.run(list(args), env=env, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:8])}… exited {result.returncode}:\n{result.stdout[-3000:]}"
                         f"\n{result.stderr[-3000:]}")
    return time.monotonic() - t0


def image_size(docker: str, name: str) -> int:
    return int(subprocess.run([docker, "image", "inspect", name, "--format", "{{.Size}}"], capture_output=True,
                              text=True, check=True).stdout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="image folder by WNID")
    parser.add_argument("--weights", type=Path, required=True, help="the BVLC GoogLeNet weights folder")
    parser.add_argument("--limit", type=int, default=40, help="images per worker run (default 40)")
    parser.add_argument("--torch-index", help="UNITSCOPE_TORCH_INDEX for worker-cpu (default: compose's, torch's "
                        "CPU index)")
    parser.add_argument("--port", type=int, default=8731)
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    docker = engine()
    print(f"engine ready in {time.monotonic() - t0:.1f} s")
    t0 = time.monotonic()
    print(f"python:3.11-slim: {base_image(docker)} in {time.monotonic() - t0:.1f} s")

    env = {**os.environ, "UNITSCOPE_IMAGES_DIR": str(args.images.resolve()), "UNITSCOPE_PORT": str(args.port),
           "UNITSCOPE_CA_CERT": extra_ca_certificates(), "COMPOSE_PROJECT_NAME": PROJECT}
    if args.torch_index:
        env["UNITSCOPE_TORCH_INDEX"] = args.torch_index
    compose = [*compose_cli(docker), "-f", "compose.yaml", "-f", "compose.host.yaml", "--profile", "cpu"]
    weights = ["-v", f"{args.weights.resolve()}:/weights:ro", "-e", "UNITSCOPE_WEIGHTS=/weights"]
    base = f"http://127.0.0.1:{args.port}"
    try:
        before = received_bytes()
        built = run([*compose, "build", "server", "worker-cpu"], env)
        downloaded = received_bytes() - before
        print(f"build of server and worker-cpu: {built:.0f} s, {downloaded / 1e9:.2f} GB received; images: "
              f"server {image_size(docker, 'unitscope-server') / 1e9:.2f} GB, "
              f"worker-cpu {image_size(docker, 'unitscope-worker-cpu') / 1e9:.2f} GB")

        first = run([*compose, "run", "--rm", *weights, "worker-cpu", "run", "--limit", str(args.limit)], env)
        print(f"worker run 1 ({args.limit} images, every layer): {first:.0f} s")

        t0 = time.monotonic()
        run([*compose, "up", "-d", "server"], env)
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > 120:
                raise SystemExit("the server did not answer /healthz within 120 s")
            time.sleep(0.2)
        print(f"server answering /healthz after {time.monotonic() - t0:.1f} s")
        run_before = httpx.get(base + "/api/", timeout=30).json()["run"]["run_id"]

        statuses: Counter[int] = Counter()
        stop = threading.Event()

        def poll() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                while not stop.is_set():
                    for path in ("/healthz", "/api/", "/layers/mixed4c", "/api/layers/mixed4c/units/0"):
                        try:
                            statuses[client.get(path).status_code] += 1
                        except httpx.HTTPError:
                            statuses[0] += 1
                    time.sleep(0.5)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            second = run([*compose, "run", "--rm", *weights, "worker-cpu", "run", "--limit", str(args.limit),
                          "--layers", "mixed4c"], env)
            time.sleep(2)
        finally:
            stop.set()
            poller.join(timeout=60)
        run_after = httpx.get(base + "/api/", timeout=30).json()["run"]["run_id"]
        print(f"worker run 2 (mixed4c) while the server answered: {second:.0f} s; run {run_before} -> {run_after}; "
              f"polls {dict(statuses)} (0: no answer)")
    finally:
        subprocess.run([*compose, "down", "-v", "--remove-orphans"], env=env, cwd=REPO, capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
