"""`python -m worker export --db FILE --out DIR`: every table of a DB as Parquet files, for Spark, Polars or pandas.

DuckDB's own `EXPORT DATABASE ... (FORMAT parquet)`: one file per table (responses, SI, ranks, every derived
table, labels, interventions), plus `schema.sql` and `load.sql`, which rebuild the DB with `IMPORT DATABASE`.
It writes into `DIR.partial` and renames it to DIR when complete, so an interrupted export leaves no DIR that
looks finished; the next export to DIR removes that leftover, and refuses a `DIR.partial` it did not write.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import duckdb

from worker.db_files import check_version, no_db, open_read_only
from worker.settings import ExportSettings
from worker.store import StoreError

MARK = ".unitscope-export"  # in DIR.partial while an export writes it: only such a folder is removed as a leftover


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
    if partial.exists():
        if not (partial / MARK).is_file():
            raise StoreError(f"{partial} exists and is no interrupted export of unitscope's (it lacks {MARK}); "
                             "move it, or name another --out")
        shutil.rmtree(partial)  # what an interrupted export left
    started = time.perf_counter()
    with open_read_only(db) as con:
        if not check_version(con, db):  # a unitscope DB of this version, or a StoreError saying how to upgrade it
            raise StoreError(f"{db} is an empty DuckDB file: nothing to export")
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY table_name").fetchall()]
        _say(f"exporting {len(tables)} tables of {db} to {out}…")
        try:
            partial.mkdir(parents=True)
            (partial / MARK).write_text("an export of unitscope's in progress: the next export to the same --out "
                                        "removes this folder\n")
            con.execute(f"EXPORT DATABASE '{str(partial).replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")
        except OSError as error:
            raise StoreError(f"cannot write {error.filename or partial}: {error.strerror or error}") from None
        except duckdb.Error as error:
            raise StoreError(f"cannot export to {partial}: {error}") from None
    # load.sql names each file by the folder it was written to: the final one, for a reader of load.sql itself
    # (IMPORT DATABASE finds the files beside it either way).
    load = partial / "load.sql"
    if load.is_file():
        load.write_text(load.read_text().replace(str(partial), str(out)))
    (partial / MARK).unlink()
    partial.rename(out)
    size = sum(p.stat().st_size for p in out.iterdir())
    _say(f"{len(tables)} tables, {size / 2**20:,.1f} MiB of Parquet in {time.perf_counter() - started:.1f} s: {out} "
         "(read with duckdb, polars or pandas; IMPORT DATABASE rebuilds the DB)")
    return 0
