"""`python -m worker export --db FILE --out DIR`: every table of a DB as Parquet files, for Spark, Polars or pandas.

DuckDB's own `EXPORT DATABASE ... (FORMAT parquet)`: one file per table (responses, SI, ranks, every derived
table, labels, interventions), plus `schema.sql` and `load.sql`, which rebuild the DB with `IMPORT DATABASE`.
It writes into `DIR.partial` and renames it to DIR when complete, so an interrupted export leaves no DIR that
looks finished.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from worker.db_files import check_version, no_db, open_read_only
from worker.settings import ExportSettings
from worker.store import StoreError


def _say(message: str) -> None:
    print(message, flush=True)


def export(settings: ExportSettings) -> int:
    """Write every table of settings.db under settings.out; returns the exit code."""
    db, out = Path(settings.db), Path(settings.out)
    if not db.is_file():
        raise no_db(db)
    if out.exists():
        raise StoreError(f"{out} already exists; name a new folder (an export never writes over one)")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted export left
    started = time.perf_counter()
    with open_read_only(db) as con:
        if not check_version(con, db):  # a unitscope DB of this version, or a StoreError saying how to upgrade it
            raise StoreError(f"{db} is an empty DuckDB file: nothing to export")
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY table_name").fetchall()]
        _say(f"exporting {len(tables)} tables of {db} to {out}…")
        partial.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"EXPORT DATABASE '{str(partial).replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")
    # load.sql names each file by the folder it was written to: the final one, for a reader of load.sql itself
    # (IMPORT DATABASE finds the files beside it either way).
    load = partial / "load.sql"
    if load.is_file():
        load.write_text(load.read_text().replace(str(partial), str(out)))
    partial.rename(out)
    size = sum(p.stat().st_size for p in out.iterdir())
    _say(f"{len(tables)} tables, {size / 2**20:,.1f} MiB of Parquet in {time.perf_counter() - started:.1f} s: {out} "
         "(read with duckdb, polars or pandas; IMPORT DATABASE rebuilds the DB)")
    return 0
