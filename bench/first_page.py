"""The first chart page in a browser with an empty cache: static files gzipped (as served) against uncompressed.

Starts the dashboard on a loopback port over --db, then opens --url in Debian's headless Chromium in a fresh
context (empty cache) per pass: once accepting gzip, once asking for `identity` (the baseline, what every
page paid before /static compressed), rounds alternating which goes first. Prints each pass's time to the
load event and to the first chart drawn, the medians and their ratio.

    .venv/bin/python bench/first_page.py --db /path/to/unitscope.duckdb --url '/layers/mixed4c?k=20'
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from app.config import Settings
from app.main import create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
MEASURE = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    return [nav.loadEventEnd - nav.startTime, performance.now()];
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--url", default="/layers/mixed4c", help="a chart page (default /layers/mixed4c)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(Settings(db=args.db)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, list[tuple[float, float]]] = {"gzip": [], "identity": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        browser.new_page().goto(base + args.url)  # warm the server's caches; not timed
        for round_ in range(args.rounds):
            for encoding in ("gzip", "identity") if round_ % 2 == 0 else ("identity", "gzip"):
                context = browser.new_context(base_url=base, extra_http_headers={"Accept-Encoding": encoding})
                page = context.new_page()
                page.goto(args.url)
                page.wait_for_function("() => document.querySelector('[data-figure] .main-svg') !== null")
                load, chart = page.evaluate(MEASURE)
                results[encoding].append((load, chart))
                context.close()
                print(f"round {round_ + 1} {encoding:>8}: load event {load:6.0f} ms, chart drawn {chart:6.0f} ms",
                      flush=True)
        browser.close()
    server.should_exit = True
    gz, plain = (statistics.median(c for _, c in results[e]) for e in ("gzip", "identity"))
    print(f"first chart page, median of {args.rounds}: {gz:.0f} ms with gzip, {plain:.0f} ms uncompressed "
          f"({plain / gz:.2f}x); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
