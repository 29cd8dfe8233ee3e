"""Heavy work under abuse: abandoned and concurrent requests whose results publication did not store.

Starts the product's server (`python -m app`) on --db and measures, on a layer page whose threshold
is not stored (so its null and counts are computed over every response of the layer):

1. the issue's command: 8 requests hung up after 0.2 s, then one /healthz (its time);
2. the targets: 8 abandoned and 20 concurrent heavy requests while two clients poll /healthz and
   stored unit pages (random units, JSON) for --window seconds: p50/p99 of each, and the heavy
   requests' statuses (200, or 503 with Retry-After when the heavy pool is full);
3. memory: five rounds of 8 abandoned requests, the server's RSS after each once it is idle again,
   and the last round's RSS over the first's.

Traffic goes to 127.0.0.1 only, bounded in count and time.

    .venv/bin/python bench/make_scale_db.py --images 40000 --layers mixed4c --db /tmp/s40k/scale40k.duckdb
    .venv/bin/python bench/heavy_work.py --db /tmp/s40k/scale40k.duckdb
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from server_speed import Server, percentile, running_server  # noqa: E402


def rss(server: Server) -> int:
    """The server's resident set size now, in bytes."""
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(server: Server) -> float:
    """CPU time the server has used so far (user + system)."""
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (100 Hz)


def heavy_url(layer: str, serial: int) -> str:
    """A layer page at a threshold publication did not store (a new one per serial, so nothing is cached)."""
    return f"/api/layers/{layer}?threshold=0.5{serial:04d}"


async def abandon(client: httpx.AsyncClient, urls: Sequence[str], after_s: float = 0.2) -> None:
    """Send each URL and hang up after `after_s`, as `curl -m 0.2` does."""
    async def one(url: str) -> None:
        try:
            await client.get(url, timeout=after_s)
        except httpx.TimeoutException:
            pass

    await asyncio.gather(*(one(u) for u in urls))


async def wait_idle(server: Server, settle_s: float = 1.0, limit_s: float = 300.0) -> float:
    """Wait until the server spends no CPU for `settle_s`; the seconds waited."""
    t0 = time.monotonic()
    last = cpu_seconds(server)
    while time.monotonic() - t0 < limit_s:
        await asyncio.sleep(settle_s)
        now = cpu_seconds(server)
        if now - last < 0.05 * settle_s:
            break
        last = now
    return time.monotonic() - t0


async def timed_get(client: httpx.AsyncClient, url: str, timeout: float = 600) -> tuple[float, int]:
    """(ms, status) of one GET."""
    ms, status, _ = await timed_answer(client, url, timeout)
    return ms, status


async def timed_answer(client: httpx.AsyncClient, url: str, timeout: float = 600) -> tuple[float, int, str]:
    """(ms, status, how it was answered: "200", or "503" with its Retry-After if any) of one GET."""
    t0 = time.perf_counter()
    response = await client.get(url, timeout=timeout)
    retry = response.headers.get("retry-after")
    how = f"{response.status_code}" + (f" Retry-After {retry} s" if retry else "")
    return (time.perf_counter() - t0) * 1000, response.status_code, how


async def issue_command(server: Server, layer: str, serial: int) -> tuple[float, float]:
    """The issue's command: (ms of /healthz after 8 abandoned requests, server CPU-seconds spent meanwhile)."""
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        cpu0 = cpu_seconds(server)
        await abandon(client, [heavy_url(layer, serial + i) for i in range(8)])
        await asyncio.sleep(0.8)
        ms, status = await timed_get(client, "/healthz")
        if status != 200:
            raise RuntimeError(f"/healthz answered {status}")
        await wait_idle(server)
        return ms, cpu_seconds(server) - cpu0


async def targets(server: Server, layer: str, units: int, serial: int, window_s: float) -> dict[str, object]:
    """8 abandoned + 20 concurrent heavy requests, with /healthz and unit pages polled meanwhile."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits) as client:
        await abandon(client, [heavy_url(layer, serial + i) for i in range(8)])
        heavy = [asyncio.create_task(timed_answer(client, heavy_url(layer, serial + 8 + i))) for i in range(20)]
        stop = time.monotonic() + window_s
        health: list[float] = []
        pages: list[float] = []
        bad: Counter[int] = Counter()
        rng = random.Random(0)

        async def poll(url_of: object, into: list[float]) -> None:
            while time.monotonic() < stop:
                ms, status = await timed_get(client, url_of())  # type: ignore[operator]
                if status != 200:
                    bad[status] += 1
                into.append(ms)
                await asyncio.sleep(0.05)

        await asyncio.gather(poll(lambda: "/healthz", health),
                             poll(lambda: f"/api/layers/{layer}/units/{rng.randrange(units)}", pages))
        heavy_results = await asyncio.gather(*heavy)
    return {"health": health, "pages": pages, "bad": bad,
            "heavy": Counter(how for _, _, how in heavy_results),
            "heavy_ms": [ms for ms, _, _ in heavy_results]}


async def memory_rounds(server: Server, layer: str, serial: int, rounds: int) -> list[int]:
    """RSS once idle after each of `rounds` rounds of 8 abandoned heavy requests."""
    out = []
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        for r in range(rounds):
            await abandon(client, [heavy_url(layer, serial + 8 * r + i) for i in range(8)])
            await wait_idle(server)
            out.append(rss(server))
    return out


def describe(name: str, values: Sequence[float], target_ms: float) -> str:
    p99 = percentile(values, 99)
    verdict = "meets" if p99 <= target_ms else "MISSES"
    return (f"{name:<22} n={len(values):4d}  p50 {percentile(values, 50):8.1f} ms  p99 {p99:8.1f} ms  "
            f"max {max(values):8.1f} ms  ({verdict} p99 <= {target_ms:.0f} ms)")


async def run(server: Server, args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        units = len((await client.get(f"/api/layers/{args.layer}", timeout=600)).json()["units"])
    print(f"server up in {server.started_s:.1f} s; {args.layer}: {units} units; RSS {rss(server) / 2**20:.0f} MiB")

    ms, cpu = await issue_command(server, args.layer, 1000)
    print(f"1. issue command: /healthz after 8 abandoned requests {ms:.0f} ms; server CPU spent on them {cpu:.1f} s")

    t = await targets(server, args.layer, units, 2000, args.window)
    print(f"2. 8 abandoned + 20 concurrent heavy requests, polled for {args.window:.0f} s:")
    print("   " + describe("/healthz", t["health"], 100))  # type: ignore[arg-type]
    print("   " + describe("stored unit JSON", t["pages"], 300))  # type: ignore[arg-type]
    heavy_ms = t["heavy_ms"]
    print(f"   heavy requests: statuses {dict(t['heavy'])}; slowest answer {max(heavy_ms) / 1000:.1f} s; "  # type: ignore
          f"non-200 polls {dict(t['bad']) or 0}")
    await wait_idle(server)

    sizes = await memory_rounds(server, args.layer, 3000, 5)
    print("3. RSS after each of 5 rounds of 8 abandoned requests: "
          + ", ".join(f"{s / 2**20:.0f}" for s in sizes) + " MiB; "
          f"last / first = {sizes[-1] / sizes[0]:.2f} (target <= 1.20)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="DB from bench/make_scale_db.py")
    parser.add_argument("--layer", default="mixed4c")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of polling in step 2 (default 20)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with running_server([sys.executable, "-m", "app"], args.db) as server:
        asyncio.run(run(server, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(argv=None))
