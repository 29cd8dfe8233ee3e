"""A bounded load run: N concurrent clients against the real server on 127.0.0.1 for a fixed time.

Starts `python -m app --db DB --host 127.0.0.1 --port <free port>` (the product's own command),
waits for it, then runs --clients concurrent clients (asyncio streams, one keep-alive HTTP/1.1 connection
each) for --duration seconds over the unit and layer endpoints, HTML and JSON, with random layers
and units (most unit requests are therefore cold: the first for that unit). Each client sends its
next request when the last one is answered. Prints requests/s, latency percentiles, the error
count (anything but 200, or no answer; must be 0), and the server's peak RSS. It stops by itself:
the loop ends at the deadline, and the server is stopped afterwards. The client shares the CPU
with the server, so on a 2-core machine requests/s is a lower bound.

    .venv/bin/python bench/load.py --db /tmp/unitscope-scale/scale.duckdb
    .venv/bin/python bench/load.py --db unitscope.duckdb --clients 32 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from server_speed import percentile, running_server  # noqa: E402

# Share of each kind of request in the mix.
MIX: tuple[tuple[str, float], ...] = (
    ("unit json", 0.30),
    ("unit page", 0.30),
    ("layer json", 0.15),
    ("layer page", 0.15),
    ("layers json", 0.05),
    ("layers page", 0.05),
)


def pick_url(rng: random.Random, layers: dict[str, list[int]]) -> tuple[str, str]:
    """(kind, url) of the next request: a random kind by MIX, a random layer and one of its units."""
    kind = rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
    layer = rng.choice(list(layers))
    unit = rng.choice(layers[layer])
    url = {
        "unit json": f"/api/layers/{layer}/units/{unit}",
        "unit page": f"/layers/{layer}/units/{unit}",
        "layer json": f"/api/layers/{layer}",
        "layer page": f"/layers/{layer}",
        "layers json": "/api/layers",
        "layers page": "/layers",
    }[kind]
    return kind, url


class Connection:
    """One keep-alive HTTP/1.1 connection, GET only, reading whole bodies.

    A minimal client on purpose: httpx's AsyncClient cost about 4 ms of CPU a request, so 32 of
    them on one core became the bottleneck (100% CPU against the server's 53%) and their own
    queueing was what the percentiles measured. This one costs a small fraction of that.
    """

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        """GET path; returns the status once the body is read. Reconnects once if the server closed."""
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                return await asyncio.wait_for(self._exchange(path), self.timeout)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, path: str) -> int:
        assert self.reader is not None and self.writer is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        await self.writer.drain()
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        if "content-length" in fields:
            await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding") == "chunked":
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")
        if fields.get("connection") == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def client_loop(
    connection: Connection, rng: random.Random, layers: dict[str, list[int]], deadline: float,
    latencies: dict[str, list[float]], errors: Counter,
) -> None:  # fmt: skip
    """Send requests one after another until the deadline."""
    while time.monotonic() < deadline:
        kind, url = pick_url(rng, layers)
        t0 = time.perf_counter()
        try:
            status = await connection.get(url)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[f"{kind}: {type(exc).__name__}: {exc}"[:200]] += 1
            connection.close()
            continue
        latencies[kind].append((time.perf_counter() - t0) * 1000)
        if status != 200:
            errors[f"{kind}: HTTP {status}"] += 1
    connection.close()


async def load(base_url: str, layers: dict[str, list[int]], clients: int, duration: float, seed: int,
               timeout: float) -> tuple[dict[str, list[float]], Counter, float]:  # fmt: skip
    """Run the clients, one connection each; returns latencies by kind (ms), errors by kind, and the elapsed seconds."""
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter = Counter()
    url = httpx.URL(base_url)
    start = time.monotonic()
    deadline = start + duration
    tasks = [
        client_loop(Connection(url.host, url.port or 80, timeout), random.Random(seed * 1000 + i), layers,
                    deadline, latencies, errors)
        for i in range(clients)
    ]  # fmt: skip
    # The loops stop at the deadline; a request in flight then has at most `timeout` more.
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + timeout + 5)
    return latencies, errors, time.monotonic() - start


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="a DB written by the worker or make_scale_db.py")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)")
    parser.add_argument("--unit-pool", type=int, default=0, metavar="N",
                        help="draw units from N random units per layer (revisits hit the server's caches); "
                             "default 0: any unit, so nearly every unit request is cold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-cpus", metavar="LIST",
                        help="CPUs the server runs on (taskset -c LIST, e.g. 0); default: any")
    parser.add_argument("--client-cpus", metavar="LIST",
                        help="CPUs the clients run on (e.g. 1), kept apart from --server-cpus; default: any")
    parser.add_argument("--warm-layers", action="store_true",
                        help="before the clock, request each layer's JSON page once: what a layer's first "
                             "request computes when publication did not store it (AUROC, null, split halves)")
    args = parser.parse_args(argv)
    if not args.db.is_file():
        parser.error(f"--db {args.db}: no such file")
    if args.clients < 1 or args.unit_pool < 0 or not 0 < args.duration <= 3600:
        parser.error("need --clients >= 1, --unit-pool >= 0 and 0 < --duration <= 3600")
    return args


def cpu_list(text: str) -> set[int]:
    """taskset's CPU list ("0", "0,2", "1-3") as a set."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def main(argv: Sequence[str] | None = None) -> int:
    """Start the server, run the load, print the figures; exit 0 only with no errors."""
    args = parse_args(argv)
    print(f"DB {args.db.resolve()} ({args.db.stat().st_size / 2**30:.2f} GiB); {args.clients} clients for "
          f"{args.duration:.0f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip
    server_command = [sys.executable, "-m", "app"]
    if args.server_cpus:
        server_command = ["taskset", "-c", args.server_cpus, *server_command]
    with running_server(server_command, args.db) as server:
        if args.client_cpus:
            os.sched_setaffinity(0, cpu_list(args.client_cpus))
        print(f"placement: server on CPUs {args.server_cpus or 'any'}, clients on CPUs {args.client_cpus or 'any'}")
        with httpx.Client(base_url=server.base_url, timeout=600) as warmup:
            index = warmup.get("/api/").raise_for_status().json()  # opens the DB before the clock starts
            if args.warm_layers:
                t0 = time.perf_counter()
                for entry in index["layers"]:
                    warmup.get(f"/api/layers/{entry['name']}").raise_for_status()
                    warmup.get(f"/api/layers/{entry['name']}/units/0").raise_for_status()
                print(f"warmed {len(index['layers'])} layers in {time.perf_counter() - t0:.1f} s")
        rng = random.Random(args.seed)
        layers = {
            entry["name"]: rng.sample(range(entry["units"]), min(args.unit_pool, entry["units"]))
            if args.unit_pool > 0 else list(range(entry["units"]))
            for entry in index["layers"]
        }
        if not layers:
            print("the DB has no complete run with layers", file=sys.stderr)
            return 1
        print(f"server up in {server.started_s:.1f} s (pid {server.process.pid}, {server.base_url}); "
              f"run {index['run']['run_id']}: {index['run']['images']:,} images, {len(layers)} layers; "
              f"units: {f'a pool of {args.unit_pool} per layer' if args.unit_pool > 0 else 'any'}")  # fmt: skip
        latencies, errors, elapsed = asyncio.run(
            load(server.base_url, layers, args.clients, args.duration, args.seed, args.timeout)
        )
        peak = server.peak_rss()
        alive = server.process.poll() is None
        log_tail = server.log.read_text(errors="replace")[-3000:]

    every = [ms for values in latencies.values() for ms in values]
    total = len(every) + sum(e for k, e in errors.items() if ": HTTP" not in k)
    print()
    print(f"{'kind':<12} {'requests':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind, _ in MIX:
        values = latencies.get(kind, [])
        print(f"{kind:<12} {len(values):>9,} {percentile(values, 50):8.1f} {percentile(values, 95):8.1f} "
              f"{percentile(values, 99):8.1f} {max(values, default=float('nan')):8.1f}")  # fmt: skip
    print(f"{'all':<12} {len(every):>9,} {percentile(every, 50):8.1f} {percentile(every, 95):8.1f} "
          f"{percentile(every, 99):8.1f} {max(every, default=float('nan')):8.1f}")  # fmt: skip
    print()
    print(f"requests/s         {total / elapsed:,.1f}  ({total:,} in {elapsed:.1f} s, {args.clients} clients)")
    print(f"latency            p50 {percentile(every, 50):.1f} ms, p99 {percentile(every, 99):.1f} ms")
    n_errors = sum(errors.values())
    print(f"errors             {n_errors}" + (f"  {dict(errors)}" if errors else ""))
    print(f"server peak RSS    {'unknown' if peak is None else f'{peak / 2**20:,.0f} MiB'}; "
          f"server alive at the end: {'yes' if alive else 'NO'}")
    print(f"load average now   {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if n_errors:
        print(f"server log, last lines:\n{log_tail}")
    return 0 if n_errors == 0 and alive else 3


if __name__ == "__main__":
    raise SystemExit(main())
