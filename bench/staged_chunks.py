"""Reading a layer's staged responses a chunk of units at a time: once per chunk (StagedArrays.read) against one pass
split by chunk (StagedArrays.chunks), on the same file in the same run.

Publication reads each layer this way, with chunks of worker.publish's size: at N images a chunk holds about
512 MiB / (48 N) units, so the per-chunk reads cost chunks x the file, quadratic in the images. Writes one staged
file of random float32 (one part, rows in image order, as a single worker writes them), times both ways over it
and checks that they give the same values (a sum per chunk).

    .venv/bin/python bench/staged_chunks.py --images 286000 --units 1024 --dir /tmp/unitscope-staged
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from worker.publish import chunk_units
from worker.staged_arrays import MAIN_PART, VALUES, StagedArrays, StagedIndex


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=286_000)
    parser.add_argument("--units", type=int, default=1024, help="units of the layer (mixed5b's 1,024 by default)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/unitscope-staged"), help="scratch folder (deleted)")
    parser.add_argument("--batch", type=int, default=10_000, help="images per write")
    args = parser.parse_args(argv)
    size = args.images * args.units * VALUES * 4
    free = shutil.disk_usage(args.dir.parent if not args.dir.exists() else args.dir).free
    if 2.2 * size > free:
        print(f"error: needs about {2.2 * size / 2**30:.1f} GiB free at {args.dir}, has {free / 2**30:.1f}",
              file=sys.stderr)
        return 2
    shutil.rmtree(args.dir, ignore_errors=True)
    staged = StagedArrays(args.dir / "run.duckdb.staged")
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for first in range(0, args.images, args.batch):
        rows = min(args.batch, args.images - first)
        staged.write(MAIN_PART, first, {"layer": rng.normal(size=(rows, args.units, VALUES)).astype(np.float32)})
    print(f"staged {args.images:,} images x {args.units:,} units ({size / 2**30:.2f} GiB) in "
          f"{time.perf_counter() - t:.1f} s; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    index = StagedIndex(ids=np.arange(args.images, dtype=np.int32),
                        parts=np.full(args.images, MAIN_PART, dtype=object), rows=np.arange(args.images))
    step = chunk_units(args.images)  # publication's chunk
    chunks = -(-args.units // step)
    sums: dict[str, list[float]] = {}
    times: dict[str, float] = {}
    for way in ("one pass, split", "a read per chunk"):
        t = time.perf_counter()
        if way == "a read per chunk":
            parts = ((first, staged.read("layer", args.units, index, slice(first, first + step)))
                     for first in range(0, args.units, step))
        else:
            parts = staged.chunks("layer", args.units, index, step)
        sums[way] = [float(values.sum(dtype=np.float64)) for _, values in parts]
        times[way] = time.perf_counter() - t
        print(f"{way:17s} {times[way]:8.1f} s  ({chunks} chunks of {step} units; "
              f"{size / 2**20 / times[way]:,.0f} MiB/s of the file)")
    shutil.rmtree(args.dir, ignore_errors=True)
    same = sums["one pass, split"] == sums["a read per chunk"]
    print(f"split / per-chunk: {times['a read per chunk'] / times['one pass, split']:.2f}x faster; "
          f"same values: {'yes' if same else 'NO'}; load average {os.getloadavg()[0]:.2f}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
