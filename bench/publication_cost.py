"""What the claims' grid of specifications adds to publication: the derived tables of a DB computed twice in one run.

Publication stores a layer's label-permutation null for every (si_stat, neg_stat) pair of the claims' grid
at both thresholds (unitscope.claim_rules.GRID_*), so that the claims page reads rather than computes its 16
specifications. This bench copies a published DB and times `python -m worker derive`'s rederive on the copy:
once with the grid, and once with the grid cut to the default specification (SI on max, negatives by min),
the baseline, and prints both with their ratio. Everything else publication derives is in both.

    .venv/bin/python bench/publication_cost.py --db /work/scratch/s286/scale286k.duckdb
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from unitscope import claim_rules
from worker.store import WorkerStore


def _derive(db: Path, memory_limit: str | None) -> float:
    started = time.perf_counter()
    with WorkerStore.open(db, memory_limit=memory_limit, upgrading=True) as store:
        store.rederive()
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a published DB (copied; the original is not touched)")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory limit of the writer, e.g. 6GB")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.db.parent) as tmp:
        copy = Path(tmp) / "copy.duckdb"
        shutil.copyfile(args.db, copy)
        # Baseline first, so that the upgrade of an older DB (a copy of every table) is in both runs alike.
        grid = (claim_rules.GRID_SI_STATS, claim_rules.GRID_NEG_STATS)
        claim_rules.GRID_SI_STATS, claim_rules.GRID_NEG_STATS = ("max",), ("min",)
        baseline = _derive(copy, args.memory_limit)
        claim_rules.GRID_SI_STATS, claim_rules.GRID_NEG_STATS = grid
        with_grid = _derive(copy, args.memory_limit)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"derived tables, default specification only: {baseline:8.1f} s")
    print(f"derived tables, with the claims' grid:       {with_grid:8.1f} s  ({with_grid / baseline:.2f}x, "
          f"+{with_grid - baseline:.1f} s)")
    print(f"load average {load} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
