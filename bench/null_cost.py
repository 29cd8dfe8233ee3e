"""What publication's permutation null costs per block of units: nulls.LayerNull.add on synthetic responses, the
grid's two bottom sets (its two negative stats) in one null against one null each, and the bottom counts by the
sparse product against the gather, in the same run.

    .venv/bin/python bench/null_cost.py
    .venv/bin/python bench/null_cost.py --sizes 40000x512 200000x336 --permutations 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from unitscope import nulls


def _timed(bottoms: list[np.ndarray], shuffles: nulls.Shuffles, values: np.ndarray, share: float) -> float:
    """Seconds to add one block of units to nulls over these bottom sets, in_bottom by `share` (SPARSE_BOTTOM_SHARE)."""
    nulls.SPARSE_BOTTOM_SHARE = share
    started = time.perf_counter()
    nulls.LayerNull(bottoms, shuffles, thresholds=(0.6,)).add(0, values)
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["6308x512", "40000x512", "200000x336"],
                        help="IMAGESxUNITS blocks (default: the shared sample, 40,000 and 200,000 images)")
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--k", type=int, default=1000, help="images in each unit's bottom set (default 1000)")
    args = parser.parse_args(argv)
    chosen = nulls.SPARSE_BOTTOM_SHARE
    rng = np.random.default_rng(0)
    print(f"P = {args.permutations}, k = {args.k}; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'images x units':>16} {'2 nulls, gather':>16} {'2 nulls':>9} {'1 null, 2 sets':>15} {'speed-up':>9}")
    for size in args.sizes:
        n, c = (int(x) for x in size.split("x"))
        values = rng.standard_normal((n, c)).astype(np.float32)
        order = np.argsort(values, axis=0)
        bottoms = [order[:args.k].T.copy(), order[-args.k:].T.copy()]  # two different bottom sets per unit
        shuffles = nulls.Shuffles(rng.random(n) < 0.55, args.permutations, 0)
        gather = sum(_timed([b], shuffles, values, 0.0) for b in bottoms)
        separate = sum(_timed([b], shuffles, values, chosen) for b in bottoms)
        shared = _timed(bottoms, shuffles, values, chosen)
        print(f"{size:>16} {gather:>15.2f}s {separate:>8.2f}s {shared:>14.2f}s {gather / shared:>8.2f}x")
    nulls.SPARSE_BOTTOM_SHARE = chosen
    return 0


if __name__ == "__main__":
    sys.exit(main())
