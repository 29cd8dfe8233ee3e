"""`python -m worker derive`: an older DB is rewritten at the current schema with the derived tables publication writes."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from fixtures import REPO, table_dump
from hand_run import publish_hand_run

from unitscope import schema
from worker import cli
from worker.store import StoreError, WorkerStore


def _as_schema_2(db: Path) -> None:
    """Make a published DB look like one written before the derived tables: version 2, none of them."""
    with duckdb.connect(str(db)) as con:
        con.execute(f"UPDATE {schema.META} SET value = '2' WHERE key = 'schema_version'")
        for table in schema.DERIVED_TABLES:
            con.execute(f"DROP TABLE {table}")


def test_derive_upgrades_a_schema_2_db_to_what_publication_writes(tmp_path: Path) -> None:
    db = tmp_path / "hand.duckdb"
    publish_hand_run(db, ranked_k=3)
    published = table_dump(db)
    _as_schema_2(db)
    with pytest.raises(StoreError, match="worker derive"):
        WorkerStore.open(db).close()  # a run refuses the old file, and says how to upgrade it

    assert cli.main(["derive", "--db", str(db)]) == cli.EXIT_OK
    assert table_dump(db) == published  # the derived rows recomputed, everything else copied
    assert not db.with_name(db.name + ".publishing").exists()
    assert cli.main(["derive", "--db", str(db)]) == cli.EXIT_OK  # at the current version: computed again, same
    assert table_dump(db) == published


def test_derive_refuses_an_unknown_version_and_a_missing_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "hand.duckdb"
    publish_hand_run(db, ranked_k=3)
    with duckdb.connect(str(db)) as con:
        con.execute(f"UPDATE {schema.META} SET value = '999' WHERE key = 'schema_version'")
    before = db.read_bytes()
    assert cli.main(["derive", "--db", str(db)]) == cli.EXIT_ERROR
    assert "schema version 999" in capsys.readouterr().err
    assert db.read_bytes() == before
    assert cli.main(["derive", "--db", str(tmp_path / "none.duckdb")]) == cli.EXIT_ERROR
    assert "does not exist" in capsys.readouterr().err
    # A first run still writing it: derive and export say so, not "does not exist".
    (tmp_path / "first.duckdb.partial").write_bytes(b"")
    for job in (["derive"], ["export", "--out", str(tmp_path / "out")]):
        assert cli.main([*job, "--db", str(tmp_path / "first.duckdb")]) == cli.EXIT_ERROR
        err = capsys.readouterr().err
        assert "is not published yet: a run is being written to first.duckdb.partial" in err, err


def test_derive_upgrades_a_schema_3_db_without_random_bases(tmp_path: Path) -> None:
    """Version 3 had no random-basis tables: the upgrade creates them empty and keeps everything else."""
    db = tmp_path / "hand.duckdb"
    publish_hand_run(db, ranked_k=3)
    published = table_dump(db)
    with duckdb.connect(str(db)) as con:
        con.execute(f"UPDATE {schema.META} SET value = '3' WHERE key = 'schema_version'")
        for table in (schema.BASES, schema.BASIS_RESPONSES, schema.BASIS_SI):
            con.execute(f"DROP TABLE {table}")
    with pytest.raises(StoreError, match="worker derive"):
        WorkerStore.open(db).close()
    assert cli.main(["derive", "--db", str(db)]) == cli.EXIT_OK
    assert table_dump(db) == published
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {schema.BASES}").fetchall() == [(0,)]


def test_derive_upgrades_a_schema_5_db_by_adding_its_labels_and_keeping_the_rest(tmp_path: Path) -> None:
    """Version 5 had no labels: the upgrade writes them, and copies every other derived table as it was (a marker
    row put into one shows it was not recomputed)."""
    db = tmp_path / "hand.duckdb"
    publish_hand_run(db, ranked_k=3)
    published = table_dump(db)
    with duckdb.connect(str(db)) as con:
        assert con.execute(f"SELECT count(*) FROM {schema.UNIT_LABELS}").fetchone()[0] > 0
        con.execute(f"UPDATE {schema.META} SET value = '5' WHERE key = 'schema_version'")
        for table in (schema.UNIT_LABELS, schema.UNIT_LABEL_TERMS):
            con.execute(f"DROP TABLE {table}")
        con.execute(f"UPDATE {schema.UNIT_MEASURES} SET kurtosis = 123.0 WHERE unit = 0")
    with pytest.raises(StoreError, match="worker derive"):
        WorkerStore.open(db).close()
    assert cli.main(["derive", "--db", str(db)]) == cli.EXIT_OK
    upgraded = table_dump(db)
    assert upgraded[schema.UNIT_LABELS] == published[schema.UNIT_LABELS]
    assert upgraded[schema.UNIT_LABEL_TERMS] == published[schema.UNIT_LABEL_TERMS]
    assert upgraded[schema.UNIT_MEASURES] != published[schema.UNIT_MEASURES]  # kept, marker and all
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(f"SELECT value FROM {schema.META} WHERE key = 'schema_version'").fetchone() == ("6",)


@pytest.mark.parametrize(("signum", "after"), [(signal.SIGINT, "deriving"), (signal.SIGINT, "layer controls"),
                                                (signal.SIGTERM, "unit pages")])
def test_ctrl_c_while_deriving_exits_130_and_leaves_the_db_as_it_was(tmp_path: Path, real_db: Path, signum: int,
                                                                     after: str) -> None:
    """SIGINT (or docker stop's SIGTERM) at a few points of publication, where DuckDB turns it into errors of its own
    inside a query: exit 128 + the signal and "interrupted", no publishing file left, the DB unchanged."""
    db = tmp_path / "copy.duckdb"
    shutil.copy(real_db, db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    proc = subprocess.Popen([sys.executable, "-m", "worker", "derive", "--db", str(db)], cwd=REPO,
                            stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                                               signal.SIG_DFL))
    seen = ""
    while after not in seen:  # the progress bar's text, as it draws
        char = proc.stderr.read(1)
        assert char, f"derive ended before {after!r}: {seen[-500:]}"
        seen += char
    proc.send_signal(signum)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 128 + signum, seen[-300:] + rest
    assert "interrupted; rerun the same command" in rest and "Traceback" not in rest
    assert not [p.name for p in tmp_path.iterdir() if "publishing" in p.name]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # publication writes another file
