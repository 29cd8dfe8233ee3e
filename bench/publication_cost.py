"""What publication's derived tables cost: `python -m worker derive`'s rederive of a copy of a published DB, timed,
with the process's peak RSS and the peak of numpy's arrays (tracemalloc), which DuckDB's buffer pool is not in.

Run it twice on one DB to compare two trees (PYTHONPATH=<other checkout> runs the same bench on that code), or
with --default-only for what the claims' grid adds (its cut to the default specification: SI on max,
negatives by min). One derive per process, so that the peak RSS is that derive's.

    .venv/bin/python bench/publication_cost.py --db /work/scratch/s286/scale286k.duckdb --memory-limit 2GB
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import duckdb

from unitscope import claim_rules
from worker.store import WorkerStore


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a published DB (copied; the original is not touched)")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory limit of the writer, e.g. 2GB")
    parser.add_argument("--default-only", action="store_true",
                        help="store the null for the default specification only, not the claims' grid")
    parser.add_argument("--chunk-mb", type=int, default=None,
                        help="responses per chunk of units, in MiB (default unitscope.data.scores.CHUNK_BYTES)")
    args = parser.parse_args(argv)
    if args.chunk_mb:
        from unitscope.data import scores
        scores.CHUNK_BYTES = args.chunk_mb * 2**20
    if args.default_only:
        claim_rules.GRID_SI_STATS, claim_rules.GRID_NEG_STATS = ("max",), ("min",)
    with duckdb.connect(str(args.db), read_only=True) as con:
        images, units, layers, widest = con.execute(
            "SELECT (SELECT count(*) FROM images), sum(units), count(*), max(units) FROM layers").fetchone()
    with tempfile.TemporaryDirectory(dir=args.db.parent) as tmp:
        copy = Path(tmp) / "copy.duckdb"
        shutil.copyfile(args.db, copy)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()  # numpy reports its arrays' memory to tracemalloc
        started = time.perf_counter()
        with WorkerStore.open(copy, memory_limit=args.memory_limit, upgrading=True) as store:
            store.rederive()
        seconds = time.perf_counter() - started
        numpy_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    spec = "default specification only" if args.default_only else "the claims' grid"
    print(f"derived tables of {layers} layer(s), {units:,} units, {images:,} images ({spec}): {seconds:.1f} s, "
          f"{units / seconds:.1f} units/s")
    print(f"peak RSS {rss / 2**30:.2f} GiB (before deriving {rss_before * 1024 / 2**30:.2f} GiB); "
          f"numpy's arrays at their peak {numpy_peak / 2**20:,.0f} MiB; one float32 layer matrix of the widest "
          f"layer would be {images * widest * 4 / 2**20:,.0f} MiB")
    chunk = f"{args.chunk_mb} MiB" if args.chunk_mb else "default"
    print(f"chunk {chunk}; DuckDB memory limit {args.memory_limit or 'default'}; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
