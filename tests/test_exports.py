"""Exports: a unit's every response as CSV and Parquet (against the hand-made DB's raw values), and
`python -m worker export`, every table as Parquet that IMPORT DATABASE turns back into the same DB."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient
from fixtures import IMAGES, LAYERS, table_dump
from hand_run import publish_hand_run

from unitscope import schema
from worker import cli, export

# The hand DB's images by id: path, WNID, class name.
IMAGE_ROWS = {image_id: (path, wnid, name) for image_id, path, wnid, _, name in IMAGES}


def expected(layer: str, unit: int) -> list[tuple[object, ...]]:
    """(image_id, path, wnid, class_name, mean, max, min) by hand, from the fixture's raw values."""
    return [(i, *IMAGE_ROWS[i], *values) for i, values in enumerate(LAYERS[layer][unit])]


def assert_rows(got: list[tuple[object, ...]], want: list[tuple[object, ...]]) -> None:
    """Ids, paths and classes exactly; the float32 stats to float32's precision."""
    assert [r[:4] for r in got] == [r[:4] for r in want]
    assert [r[4:] for r in got] == [pytest.approx(r[4:], rel=1e-6) for r in want]


@pytest.mark.parametrize(("layer", "unit"), [("mixed4c", 0), ("mixed4c", 2), ("conv1", 1)])
def test_a_units_responses_as_csv_and_parquet(client: TestClient, tmp_path: Path, layer: str, unit: int) -> None:
    response = client.get(f"/api/layers/{layer}/units/{unit}/responses.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert f'filename="{layer}_unit{unit}_run1.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert_rows([(int(r["image_id"]), r["path"], r["wnid"], r["class_name"], float(r["act_mean"]),
                  float(r["act_max"]), float(r["act_min"])) for r in rows], expected(layer, unit))

    parquet = client.get(f"/api/layers/{layer}/units/{unit}/responses.parquet")
    assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
    path = tmp_path / "unit.parquet"
    path.write_bytes(parquet.content)
    with duckdb.connect() as con:
        got = con.execute(f"SELECT * FROM '{path}' ORDER BY image_id").fetchall()
    assert_rows(got, expected(layer, unit))


def test_unknown_units_and_formats_are_refused(client: TestClient) -> None:
    assert client.get("/api/layers/mixed4c/units/99/responses.csv").status_code == 404
    assert client.get("/api/layers/nope/units/0/responses.csv").status_code == 404
    assert client.get("/api/layers/mixed4c/units/0/responses.xlsx").status_code == 422


def test_worker_export_writes_every_table_as_parquet_that_rebuilds_the_db(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "hand.duckdb"
    publish_hand_run(db, ranked_k=3)
    out = tmp_path / "export"
    assert cli.main(["export", "--db", str(db), "--out", str(out)]) == cli.EXIT_OK
    published = table_dump(db)
    assert {p.stem for p in out.glob("*.parquet")} == set(published)
    assert (out / "schema.sql").is_file() and (out / "load.sql").is_file()
    assert not out.with_name("export.partial").exists()
    # load.sql names the files where they are, for a reader of it (IMPORT DATABASE finds them either way)
    load = (out / "load.sql").read_text()
    assert f"'{out / 'responses.parquet'}'" in load and "export.partial" not in load
    with duckdb.connect() as con:  # a Parquet file reads on its own, as Polars or pandas would read it
        assert con.execute(f"SELECT count(*) FROM '{out / 'responses.parquet'}'").fetchone()[0] == \
            len(published[schema.RESPONSES])
    rebuilt = tmp_path / "rebuilt.duckdb"
    with duckdb.connect(str(rebuilt)) as con:
        con.execute(f"IMPORT DATABASE '{out}'")
    assert table_dump(rebuilt) == published
    # Never over an existing folder, and never from a DB of another schema version.
    assert cli.main(["export", "--db", str(db), "--out", str(out)]) == cli.EXIT_ERROR
    with duckdb.connect(str(db)) as con:
        con.execute(f"UPDATE {schema.META} SET value = '5' WHERE key = 'schema_version'")
    assert cli.main(["export", "--db", str(db), "--out", str(tmp_path / "other")]) == cli.EXIT_ERROR
    assert not (tmp_path / "other").exists()
    # Not a DuckDB file at all: said so, not DuckDB's "Cannot launch in-memory database in read-only mode"
    (tmp_path / "x.parquet").write_bytes(b"PAR1" + bytes(64))
    capsys.readouterr()
    assert cli.main(["export", "--db", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "x")]) == cli.EXIT_ERROR
    assert "x.parquet is not a DuckDB file, so not a unitscope DB" in capsys.readouterr().err


def test_export_removes_only_its_own_leftover_and_names_a_path_it_cannot_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "hand.duckdb"
    publish_hand_run(db, ranked_k=3)
    # Someone's folder that happens to be named <out>.partial: kept, and the export refused.
    theirs = tmp_path / "mydata.partial"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert cli.main(["export", "--db", str(db), "--out", str(tmp_path / "mydata")]) == cli.EXIT_ERROR
    assert "mydata.partial exists and is no interrupted export of unitscope's" in capsys.readouterr().err
    assert (theirs / "notes.txt").read_text() == "mine" and not (tmp_path / "mydata").exists()
    # An interrupted export's leftover (its mark inside): removed, and the export completes without the mark.
    left = tmp_path / "again.partial"
    left.mkdir()
    (left / export.MARK).write_text("")
    (left / "half.parquet").write_bytes(b"PAR1")
    assert cli.main(["export", "--db", str(db), "--out", str(tmp_path / "again")]) == cli.EXIT_OK
    assert not left.exists() and not (tmp_path / "again" / "half.parquet").exists()
    assert not (tmp_path / "again" / export.MARK).exists() and (tmp_path / "again" / "load.sql").is_file()
    # A folder that cannot be made (its parent is a file): one line naming the path, no traceback.
    (tmp_path / "file").write_text("")
    capsys.readouterr()
    assert cli.main(["export", "--db", str(db), "--out", str(tmp_path / "file" / "out")]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ") and "file" in err and "Traceback" not in err
    # A folder named as the DB: said so, not "does not exist".
    assert cli.main(["export", "--db", str(tmp_path), "--out", str(tmp_path / "x")]) == cli.EXIT_ERROR
    assert f"{tmp_path} is a folder, not a DuckDB file" in capsys.readouterr().err
