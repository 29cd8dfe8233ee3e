"""What a fresh server pays once per layer: each page kind's first request against a second one of the same kind.

In process (the app under Starlette's TestClient), over every layer of the DB's run, in the order a user meets
them: `/api/layers` and `/layers`, each layer's JSON and page, each layer's first unit (JSON, then a second unit's
page), then a third unit's JSON, the baseline: a unit request once its layer is open. A lazy server (`--lazy`,
nothing read ahead) pays these on its first requests, and a load run's first seconds queue behind them; the
default server reads them ahead (app.warm): its start is timed, then the same requests. Run it alternately against
an older checkout (PYTHONPATH) to compare: the machine is shared.

    .venv/bin/python bench/first_touch.py --db /path/to/scale.duckdb --repeats 2
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app


def one_pass(db: Path, lazy: bool) -> dict[str, float]:
    """ms of the start and per kind of request for one fresh app over db."""
    start = time.perf_counter()
    with TestClient(create_app(Settings(db=db, lazy=lazy)), base_url="http://127.0.0.1") as client:
        times = {"start": (time.perf_counter() - start) * 1000}
        index = client.get("/api/").raise_for_status().json()
        layers = [entry["name"] for entry in index["layers"]]
        plan = [
            ("layers json", ["/api/layers"]),
            ("layers page", ["/layers"]),
            ("layer json", [f"/api/layers/{layer}" for layer in layers]),
            ("layer page", [f"/layers/{layer}" for layer in layers]),
            ("first unit json", [f"/api/layers/{layer}/units/0" for layer in layers]),
            ("unit page", [f"/layers/{layer}/units/1" for layer in layers]),
            ("later unit json", [f"/api/layers/{layer}/units/2" for layer in layers]),
        ]
        for kind, urls in plan:
            start = time.perf_counter()
            for url in urls:
                client.get(url).raise_for_status()
            times[kind] = (time.perf_counter() - start) * 1000
        return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="a DB written by the worker or make_scale_db.py")
    parser.add_argument("--repeats", type=int, default=1, help="fresh apps, one after another (default 1)")
    args = parser.parse_args(argv)
    if not args.db.exists():
        print(f"error: no DB at {args.db}", file=sys.stderr)
        return 1
    print(f"DB {args.db}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    for repeat, lazy in itertools.product(range(args.repeats), (True, False)):
        times = one_pass(args.db, lazy)
        first = sum(ms for kind, ms in times.items() if kind not in ("start", "later unit json"))
        print(f"pass {repeat + 1}, {'lazy' if lazy else 'read ahead'}: "
              + " | ".join(f"{kind} {ms:,.0f} ms" for kind, ms in times.items()))
        print(f"  first touches {first:,.0f} ms in all; the first unit JSON of a layer "
              f"{times['first unit json'] / max(times['later unit json'], 1e-9):.1f}x a later one")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
