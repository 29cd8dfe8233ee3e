"""The first chart page in a browser with an empty cache: time to first paint, first chart and every chart drawn.

Starts the dashboard on a loopback port over --db (the code on the Python path: run it with PYTHONPATH set to
an older checkout to time that one), then opens each --url in Debian's headless Chromium, in a fresh context
(empty cache) per pass, rounds alternating the URLs' order. The browser is started and one page loaded before
timing, so the figures are pages, not the browser's start. Prints every pass, then each URL's medians and
the bytes of JavaScript it fetched.

    .venv/bin/python bench/first_page.py --db /path/to/unitscope.duckdb --url /layers/mixed4c --url /layers
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
# Polled every animation frame: the time at which the first chart, then every chart, has its SVG.
CHARTS_DRAWN = """(every) => {
    const charts = Array.from(document.querySelectorAll('[data-figure]'));
    const drawn = charts.filter(c => c.querySelector('.main-svg')).length;
    return (every ? drawn === charts.length : drawn > 0) ? performance.now() : false;
}"""
MEASURE = """() => {
    const paint = performance.getEntriesByName('first-contentful-paint')[0];
    const scripts = performance.getEntriesByType('resource').filter(r => r.initiatorType === 'script');
    return [paint ? paint.startTime : NaN, scripts.reduce((sum, r) => sum + r.encodedBodySize, 0)];
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pass(browser: object, base: str, url: str) -> tuple[float, float, float, int]:
    """One page in a fresh context: first paint, first chart, every chart (ms), script bytes on the wire."""
    context = browser.new_context(base_url=base)  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(url, wait_until="commit")
    first = page.wait_for_function(CHARTS_DRAWN, arg=False, polling="raf").json_value()
    every = page.wait_for_function(CHARTS_DRAWN, arg=True, polling="raf").json_value()
    paint, script_bytes = page.evaluate(MEASURE)
    context.close()
    return paint, first, every, script_bytes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--url", action="append", help="a chart page; repeatable (default /layers/mixed4c)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image-roots", type=Path, nargs="+", default=(),
                        help="folders the server may serve the run's images from (a unit page's thumbnails)")
    args = parser.parse_args(argv)
    urls = args.url or ["/layers/mixed4c"]
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(Settings(db=args.db, image_roots=tuple(args.image_roots))), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, list[tuple[float, float, float, int]]] = {url: [] for url in urls}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for url in urls:  # the server's caches warm and the browser started; not timed
            _pass(browser, base, url)
        for round_ in range(args.rounds):
            for url in urls if round_ % 2 == 0 else urls[::-1]:
                results[url].append(timing := _pass(browser, base, url))
                print(f"round {round_ + 1} {url}: first paint {timing[0]:5.0f} ms, first chart {timing[1]:5.0f} ms, "
                      f"every chart {timing[2]:5.0f} ms", flush=True)
        browser.close()
    server.should_exit = True
    for url, passes in results.items():
        paint, first, every = (statistics.median(t[i] for t in passes) for i in range(3))
        print(f"{url}, median of {args.rounds}: first paint {paint:.0f} ms, first chart {first:.0f} ms, every chart "
              f"{every:.0f} ms; {passes[0][3] / 1e6:.2f} MB of scripts on the wire")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
