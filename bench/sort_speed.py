"""Sorting a layer's columns for the rank statistics: unitscope.stats' radix order against numpy's argsort, in one run.

For each number of images, a block of float32 columns like pre-ReLU responses (normal, a seventh of them 0.0 and
an eleventh -0.0, so runs of ties and both signed zeros), timed four ways, rounds alternating the order:
- argsort: numpy's default argsort of one column (the baseline, what sorted_runs used before);
- radix: stats._radix_order of the same column;
- sorted_runs / sorted_runs on argsort: the whole of stats.sorted_runs (the order, then each value's run of
  equal values) with each of the two sorts.
Figures are the median per column over rounds; the check says the two orders give the same sorted values and
sorted_runs the same ranks.

    .venv/bin/python bench/sort_speed.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from unittest import mock

import numpy as np

from unitscope import stats


def _column_ms(fn: Callable[[], object], columns: int) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1e3 / columns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[6_308, 286_000, 1_280_000])
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.columns} columns, {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}")
    print(f"{'images':>9} {'argsort ms':>10} {'radix ms':>9} {'ratio':>6} {'runs on argsort':>15} {'sorted_runs':>11}"
          f" {'ratio':>6}  check")  # fmt: skip
    for n in args.images:
        block = rng.standard_normal((n, args.columns)).astype(np.float32)
        block[::7], block[::11] = 0.0, -0.0
        column = np.ascontiguousarray(block[:, 0])

        def old_runs() -> stats.SortedRuns:
            with mock.patch.object(stats, "_radix_order", np.argsort):
                return stats.sorted_runs(block)

        ways: dict[str, Callable[[], object]] = {
            "argsort": lambda: np.argsort(column), "radix": lambda: stats._radix_order(column),
            "old runs": old_runs, "runs": lambda: stats.sorted_runs(block)}  # fmt: skip
        per = {"argsort": 1, "radix": 1, "old runs": args.columns, "runs": args.columns}
        times: dict[str, list[float]] = {name: [] for name in ways}
        for round_ in range(args.rounds):
            for name in ways if round_ % 2 == 0 else reversed(ways):
                times[name].append(_column_ms(ways[name], per[name]))
        ms = {name: statistics.median(t) for name, t in times.items()}
        same = np.array_equal(column[np.argsort(column)], column[stats._radix_order(column)]) and np.array_equal(
            old_runs().ranks(), stats.sorted_runs(block).ranks())
        print(f"{n:>9,} {ms['argsort']:>10.2f} {ms['radix']:>9.2f} {ms['argsort'] / ms['radix']:>5.2f}x"
              f" {ms['old runs']:>15.2f} {ms['runs']:>11.2f} {ms['old runs'] / ms['runs']:>5.2f}x  "
              f"{'same' if same else 'DIFFERENT'}")  # fmt: skip


if __name__ == "__main__":
    main()
