"""How far two published runs are apart, unit by unit: SI and in_top/in_bottom, per layer and pooled.

Made to compare a `--decode gpu` run with a `--decode pil` run of the same images and weights:

    .venv/bin/python bench/decode_diff.py /work/data/final.duckdb /work/data/decode/gpu.duckdb

For each layer the two runs share: the max and median |delta SI| (SI on --si-stat, category
--category), the Pearson correlation of SI, how many units' selective flag (SI >= --selective)
differs, and the max and median |delta in_top| and |delta in_bottom| at --k (in_top by the study's
positive stat, in_bottom by its negative one, from the stored ranks). Torch-free: DuckDB and numpy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from unitscope import claim_rules, schema
from unitscope.metrics_sql import stored_counts_sql


@dataclass(frozen=True)
class UnitValues:
    """One layer of one run: SI, in_top and in_bottom by unit index (NaN SI for a flat unit)."""

    si: np.ndarray
    in_top: np.ndarray
    in_bottom: np.ndarray


def latest_run(con: duckdb.DuckDBPyConnection) -> int:
    """The newest complete run of a DB."""
    row = con.execute(f"SELECT max(run_id) FROM {schema.RUNS} WHERE status = ?", [schema.RUN_COMPLETE]).fetchone()
    if row is None or row[0] is None:
        raise SystemExit("error: no complete run in the DB")
    return int(row[0])


def layers_of(con: duckdb.DuckDBPyConnection, run_id: int) -> list[str]:
    """The run's layers in depth order."""
    rows = con.execute(f"SELECT layer FROM {schema.LAYERS_TABLE} WHERE run_id = ? ORDER BY position", [run_id])
    return [layer for (layer,) in rows.fetchall()]


def unit_values(con: duckdb.DuckDBPyConnection, run_id: int, layer: str, args: argparse.Namespace) -> UnitValues:
    """SI and the in_top / in_bottom counts of every unit of one layer."""
    si = con.execute(
        f"SELECT unit, si FROM {schema.UNIT_SI} WHERE run_id = ? AND layer = ? AND category = ? AND stat = ? "
        "ORDER BY unit",
        [run_id, layer, args.category, args.si_stat],
    ).fetchall()
    counts = con.execute(stored_counts_sql(), {
        "run_id": run_id, "layer": layer, "category": args.category, "k": args.k,
        "pos_stat": schema.DEFAULT_POS_STAT, "neg_stat": schema.DEFAULT_NEG_STAT,
    }).fetchall()  # fmt: skip
    if not si or len(counts) != len(si):
        raise SystemExit(f"error: run {run_id} has no SI or ranks for {layer} / {args.category}")
    return UnitValues(
        np.array([np.nan if v is None else v for _, v in si], dtype=np.float64),
        np.array([row[1] for row in counts], dtype=np.int64),
        np.array([row[2] for row in counts], dtype=np.int64),
    )


def compare(a: UnitValues, b: UnitValues, selective: float) -> dict[str, float]:
    """The figures of one row of the report."""
    both = ~(np.isnan(a.si) | np.isnan(b.si))
    dsi = np.abs(a.si[both] - b.si[both])
    dtop, dbottom = np.abs(a.in_top - b.in_top), np.abs(a.in_bottom - b.in_bottom)
    return {
        "units": float(len(a.si)),
        "max_dsi": float(dsi.max()),
        "median_dsi": float(np.median(dsi)),
        "corr": float(np.corrcoef(a.si[both], b.si[both])[0, 1]),
        "flips": float(np.sum((a.si[both] >= selective) != (b.si[both] >= selective))),
        "selective_a": float(np.sum(a.si[both] >= selective)),
        "max_dtop": float(dtop.max()),
        "median_dtop": float(np.median(dtop)),
        "max_dbottom": float(dbottom.max()),
        "median_dbottom": float(np.median(dbottom)),
    }


def concat(parts: Sequence[UnitValues]) -> UnitValues:
    """Several layers' units as one set, for the pooled row."""
    return UnitValues(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("si", "in_top", "in_bottom")))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db_a", type=Path, help="reference DB (e.g. the --decode pil run)")
    parser.add_argument("db_b", type=Path, help="DB compared with it (e.g. the --decode gpu run)")
    parser.add_argument("--run-a", type=int, help="run of db_a (default: its newest complete run)")
    parser.add_argument("--run-b", type=int, help="run of db_b (default: its newest complete run)")
    parser.add_argument("--layers", nargs="+", help="layers (default: every layer both runs have)")
    parser.add_argument("--category", default=schema.DEFAULT_CATEGORY)
    parser.add_argument("--k", type=int, default=schema.DEFAULT_K, help=f"at most {schema.RANKED_K}")
    parser.add_argument("--si-stat", default=schema.DEFAULT_SI_STAT, choices=schema.STATS)
    parser.add_argument("--selective", type=float, default=claim_rules.FIGURE_SI, help="SI of the selective flag")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.k <= schema.RANKED_K:
        raise SystemExit(f"error: --k must be 1..{schema.RANKED_K} (the stored ranks)")
    with (
        duckdb.connect(str(args.db_a), read_only=True) as con_a,
        duckdb.connect(str(args.db_b), read_only=True) as con_b,
    ):
        run_a = args.run_a or latest_run(con_a)
        run_b = args.run_b or latest_run(con_b)
        shared = [layer for layer in layers_of(con_a, run_a) if layer in set(layers_of(con_b, run_b))]
        layers = args.layers or shared
        missing = [layer for layer in layers if layer not in shared]
        if missing:
            raise SystemExit(f"error: not in both runs: {', '.join(missing)} (shared: {', '.join(shared)})")
        values = {layer: (unit_values(con_a, run_a, layer, args), unit_values(con_b, run_b, layer, args))
                  for layer in layers}  # fmt: skip
    print(f"A: {args.db_a} run {run_a}; B: {args.db_b} run {run_b}; category {args.category}, SI on "
          f"{args.si_stat}, k = {args.k}, selective: SI >= {args.selective}")  # fmt: skip
    print(f"{'layer':<9} {'units':>5} {'max|dSI|':>9} {'med|dSI|':>9} {'corr SI':>9} {'flips':>11} "
          f"{'max|dtop|':>9} {'med|dtop|':>9} {'max|dbot|':>9} {'med|dbot|':>9}")  # fmt: skip
    rows = [(layer, compare(a, b, args.selective)) for layer, (a, b) in values.items()]
    if len(values) > 1:
        pooled = (concat([a for a, _ in values.values()]), concat([b for _, b in values.values()]))
        rows.append(("all", compare(*pooled, args.selective)))
    for name, r in rows:
        flips = f"{r['flips']:.0f}/{r['selective_a']:.0f}"
        print(f"{name:<9} {r['units']:>5.0f} {r['max_dsi']:>9.1e} {r['median_dsi']:>9.1e} {r['corr']:>9.6f} "
              f"{flips:>11} {r['max_dtop']:>9.0f} {r['median_dtop']:>9.1f} {r['max_dbottom']:>9.0f} "
              f"{r['median_dbottom']:>9.1f}")  # fmt: skip
    print("flips: units whose selective flag differs / units selective in A; dtop, dbot: in_top, in_bottom "
          "(category images among a unit's k top / bottom images)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
