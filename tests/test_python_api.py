"""The Python API (unitscope.api): its numbers are the server's, the docs' worked example runs, and it needs no torch."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures import IMAGES, LAYERS, REPO, expected_scores, in_category, ranked

import unitscope
from unitscope import NotFound, Unavailable


def _same(a: float | None, b: float | None) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return b is not None and a == pytest.approx(b, rel=1e-12, abs=1e-15)


def _api_rows(scores) -> list[dict]:
    cols = scores.fetchnumpy()
    out = []
    for i in range(len(cols["unit"])):
        row = {}
        for name, values in cols.items():
            value = values[i]
            row[name] = None if np.ma.is_masked(value) else value.item() if hasattr(value, "item") else value
        out.append(row)
    return out


@pytest.mark.parametrize("query", [{}, {"category": "fish", "k": 2, "si_stat": "mean"},
                                   {"neg_stat": "mean", "pos_stat": "mean", "threshold": 0.5}])
def test_scores_equal_the_layer_pages(hand_ro: dict[str, Path], client: TestClient, query: dict) -> None:
    """layer.scores() equals /api/layers/mixed4c unit for unit, column for column, and the brute-force scores."""
    body = client.get("/api/layers/mixed4c", params=query).json()
    with unitscope.open(hand_ro["db"]) as db:
        rows = _api_rows(db.run().layer("mixed4c").scores(**query))
    assert [r["unit"] for r in rows] == [u["unit"] for u in body["units"]] == list(range(len(LAYERS["mixed4c"])))
    assert list(rows[0]) == list(body["units"][0])  # the page's columns, in its order
    for row, page in zip(rows, body["units"]):
        for column, value in page.items():
            same = row[column] == value if isinstance(value, (str, bool)) else _same(row[column], value)
            assert same, (row["unit"], column, row[column], value)
    # And both equal the numbers worked out from the hand DB's raw values (tests/fixtures.py).
    k = body["k"]
    raw = expected_scores("mixed4c", query.get("category", "dog"), k, query.get("pos_stat", "max"),
                          query.get("neg_stat", "min"), query.get("si_stat", "max"))
    assert [(r["unit"], r["in_top"], r["in_bottom"]) for r in rows] == [(u, t, b) for u, _, t, b in raw]
    assert all(_same(r["si"], si) for r, (_, si, _, _) in zip(rows, raw))


def test_a_units_rows_and_responses(hand_ro: dict[str, Path]) -> None:
    with unitscope.open(hand_ro["db"]) as db:
        run = db.run()
        unit = run.layer("mixed4c").unit(0)
        top = unit.top(3).fetchnumpy()
        bottom = unit.bottom(3, stat="min").fetchnumpy()
        responses = unit.responses("max")
        image_ids = run.images().fetchnumpy()["image_id"]
    assert top["image_id"].tolist() == ranked("mixed4c", 0, "max", "top")[:3]
    assert bottom["image_id"].tolist() == ranked("mixed4c", 0, "min", "bottom")[:3]
    assert top["rank"].tolist() == [1, 2, 3]
    assert list(top["is_category"]) == [bool(in_category("dog")[i]) for i in top["image_id"]]
    assert all(p.endswith((".jpg", ".png", ".jpeg", ".JPEG")) for p in top["path"])
    assert len(responses) == len(image_ids) == len(IMAGES)
    assert responses[top["image_id"][0]] == pytest.approx(top["value"][0])
    assert responses.max() == pytest.approx(top["value"][0])


def test_relations_save_as_the_docs_say_and_the_db_stays_read_only(hand_ro: dict[str, Path], tmp_path: Path) -> None:
    """`.write_parquet` / `.write_csv` of a relation (docs/python-api.md) write the file; the DB itself is read-only."""
    import duckdb

    with unitscope.open(hand_ro["db"]) as db:
        scores = db.run().layer("mixed4c").scores(k=2)
        expected = scores.fetchnumpy()
        scores.write_parquet(str(tmp_path / "scores.parquet"))
        db.run().layer("mixed4c").unit(0).top(3).write_csv(str(tmp_path / "top.csv"))
        with pytest.raises(duckdb.Error, match="read-only"):
            db.sql("CREATE TABLE mine (x INT)")
    saved = duckdb.sql(f"SELECT * FROM '{tmp_path / 'scores.parquet'}' ORDER BY unit").fetchnumpy()
    assert saved["unit"].tolist() == expected["unit"].tolist()
    np.testing.assert_array_equal(saved["in_top"], expected["in_top"])
    top = duckdb.sql(f"SELECT image_id FROM '{tmp_path / 'top.csv'}' ORDER BY rank").fetchnumpy()["image_id"]
    assert top.tolist() == ranked("mixed4c", 0, "max", "top")[:3]


def test_bad_input_is_named(hand_ro: dict[str, Path], tmp_path: Path) -> None:
    with unitscope.open(hand_ro["db"]) as db:
        run = db.run()
        with pytest.raises(NotFound, match="unknown layer 'nope'; run 1 has conv1, mixed4c"):
            run.layer("nope")
        with pytest.raises(NotFound, match="unit 99 is not in conv1"):
            run.layer("conv1").unit(99)
        with pytest.raises(NotFound, match="unknown category 'cats'"):
            run.layer("conv1").scores(category="cats")
        with pytest.raises(ValueError, match="unknown stat 'median'"):
            run.layer("conv1").scores(si_stat="median")
        for k in (0, 10_001):  # the server's 422s
            with pytest.raises(ValueError, match="k must be 1 to 10,000"):
                run.layer("conv1").scores(k=k)
        for threshold in (2, -0.1, float("nan")):  # the server's 422s
            with pytest.raises(ValueError, match="threshold must be an SI, between 0 and 1"):
                run.layer("conv1").scores(threshold=threshold)
        with pytest.raises(NotFound, match="no complete run 9"):
            db.run(9)
        with pytest.raises(TypeError, match="a run id is a whole number, got '1'"):
            db.run("1")  # not "no complete run 1"
        assert db.run(np.int64(1)).info.run_id == 1
        # Numbers of the wrong kind: a TypeError naming the argument, never a count on a truncated value.
        layer, unit = run.layer("conv1"), run.layer("conv1").unit(0)
        for call, message in ((lambda: layer.scores(k=2.5), "k is a whole number, got 2.5"),
                              (lambda: layer.scores(k=True), "k is a whole number, got True"),
                              (lambda: layer.scores(k="2"), "k is a whole number, got '2'"),
                              (lambda: layer.scores(threshold="0.7"), "threshold is a number, got '0.7'"),
                              (lambda: layer.scores(threshold=None), "threshold is a number, got None"),
                              (lambda: unit.top(2.5), "n is a whole number, got 2.5"),
                              (lambda: unit.bottom(True), "n is a whole number, got True"),
                              (lambda: db.search(run_id="1"), "a run id is a whole number, got '1'")):
            with pytest.raises(TypeError, match=re.escape(message)):
                call()
        with pytest.raises(ValueError, match="n must be at least 1, got 0"):
            unit.near_zero(0)
        for bad in ({"si_stat": "median"}, {"threshold": 5}):  # checked before looking for the ablation
            with pytest.raises(ValueError, match="unknown stat 'median'|threshold must be an SI"):
                layer.ablation(**bad)
        # A numpy integer is a whole number: the same numbers as the int.
        assert layer.scores(k=np.int64(2)).fetchall() == layer.scores(k=2).fetchall()
        assert unit.top(np.int32(2)).fetchall() == unit.top(2).fetchall()
        assert db.search(run_id=np.int64(1)).fetchall() == db.search(run_id=1).fetchall()

    # A handle reads the file as it was opened: after a publication renames a new file over it, a run it cannot see
    # says so (the worker publishes by rename; here a copy renamed over it).
    copy = tmp_path / "published.duckdb"
    shutil.copy(hand_ro["db"], copy)
    with unitscope.open(copy) as db:
        shutil.copy(hand_ro["db"], tmp_path / "next.duckdb")
        os.replace(tmp_path / "next.duckdb", copy)
        assert db.run().info.run_id == 1  # still the old file's
        with pytest.raises(NotFound, match="published again since it was opened: unitscope.open"):
            db.run(2)
    other = tmp_path / "other.duckdb"
    import duckdb
    duckdb.connect(str(other)).execute("CREATE TABLE t (x INT)").close()
    with pytest.raises(Unavailable, match="not a unitscope database"):
        unitscope.open(other)


def test_scores_warn_as_the_pages_do_when_top_and_bottom_overlap(hand_ro: dict[str, Path], client: TestClient) -> None:
    with unitscope.open(hand_ro["db"]) as db:
        run = db.run()
        layer = run.layer("conv1")
        images = run.info.images
        with pytest.warns(unitscope.OverlapWarning) as caught:
            layer.scores(k=images)
        page = client.get("/api/layers/conv1", params={"k": images}).json()
        assert [str(w.message) for w in caught] == page["warnings"] != []
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            layer.scores(k=max(1, images // 2))  # 2k <= images: no overlap, no warning
        assert client.get("/api/layers/conv1", params={"k": max(1, images // 2)}).json()["warnings"] == []


def test_a_closed_handle_says_so(hand_ro: dict[str, Path]) -> None:
    db = unitscope.open(hand_ro["db"])
    layer = db.run().layer("conv1")
    unit = layer.unit(0)
    db.close()
    for call in (db.runs, db.run, layer.scores, unit.top, unit.responses, unit.label, lambda: db.search("x"),
                 lambda: db.sql("SELECT 1"), lambda: db.relation({"x": np.arange(2)})):
        with pytest.raises(unitscope.Closed, match="was closed .*unitscope.open\\(\\) it again"):
            call()


def test_a_unit_is_a_whole_number_within_the_layer(hand_ro: dict[str, Path]) -> None:
    """mixed4c has units 0, 1 and 2 (fixtures.MIXED4C): -1 is no index from the end, True and 2.0 are no units."""
    with unitscope.open(hand_ro["db"]) as db:
        layer = db.run().layer("mixed4c")
        for unit in (-1, -3, 3, -513):
            with pytest.raises(NotFound, match=f"unit {unit} is not in mixed4c, which has units 0 to 2"):
                layer.unit(unit)
        for unit in (True, False, 2.0, "1", None):
            with pytest.raises(TypeError, match="a unit is a whole number"):
                layer.unit(unit)  # type: ignore[arg-type]
        found = layer.unit(np.int64(2))  # a numpy integer, as from scores().fetchnumpy(), is one
        assert found.unit == 2 and type(found.unit) is int
        assert found.responses("max").tolist() == [m for _, m, _ in LAYERS["mixed4c"][2]]


def test_search_refuses_what_the_servers_search_refuses(hand_ro: dict[str, Path], client: TestClient) -> None:
    """An unknown run or layer is NotFound (the server's 404), a bad side, limit or max_q a ValueError (its 422)."""
    with unitscope.open(hand_ro["db"]) as db:
        for where, message in (({"run_id": 99}, "no complete run 99"),
                               ({"run_id": 2}, "no complete run 2"),  # still running
                               ({"layer": "nope"}, "unknown layer 'nope'; the runs have conv1, mixed4c"),
                               ({"run_id": 1, "layer": "nope"}, "unknown layer 'nope'; run 1 has conv1, mixed4c")):
            with pytest.raises(NotFound, match=re.escape(message)):
                db.search(**where)
        with pytest.raises(ValueError, match="side must be one of excites, inhibits or None, got 'up'"):
            db.search(side="up")
        for limit in (-1, 0):
            with pytest.raises(ValueError, match="limit must be at least 1"):
                db.search(limit=limit)
        for limit in (2.5, True):
            with pytest.raises(TypeError, match="limit is a whole number"):
                db.search(limit=limit)  # type: ignore[arg-type]
        for max_q in (0, -0.1, 1.5):
            with pytest.raises(ValueError, match=r"max_q must be a number in \(0, 1\]"):
                db.search(max_q=max_q)
        # Filters that name a real run and layer: the hand-made DB's label tables are empty, so nothing matches,
        # as on the server.
        assert db.search(run_id=1, layer="mixed4c", side="inhibits", limit=1).fetchall() == []
    body = client.get("/api/units", params={"run": 1, "layer": "mixed4c", "side": "inhibits", "limit": 1}).json()
    assert (body["total"], body["units"]) == (0, [])


def test_open_says_unavailable_for_what_is_no_unitscope_db(tmp_path: Path) -> None:
    """Junk, a missing path, a folder, a Parquet file and an empty file: unitscope.Unavailable naming the path."""
    import duckdb

    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"junk\n")
    parquet = tmp_path / "t.parquet"
    duckdb.sql(f"COPY (SELECT 1 AS x) TO '{parquet}' (FORMAT parquet)")
    empty = tmp_path / "empty.duckdb"
    empty.write_bytes(b"")
    (tmp_path / "folder.duckdb").mkdir()
    for path, why in ((junk, "is not a DuckDB file, so not a unitscope database"),
                      (parquet, "is not a DuckDB file, so not a unitscope database"),
                      (empty, "is not a DuckDB file, so not a unitscope database"),
                      (tmp_path / "folder.duckdb", "is not a file: a unitscope database is one DuckDB file")):
        with pytest.raises(Unavailable) as raised:
            unitscope.open(path)
        assert str(raised.value) == f"{path} {why}"
    with pytest.raises(Unavailable, match=re.escape(f"no database file at {tmp_path / 'missing.duckdb'}")):
        unitscope.open(tmp_path / "missing.duckdb")
    assert not (tmp_path / "missing.duckdb").exists()  # read-only: nothing made on the way

def test_the_docs_example_runs_on_a_real_db(real_db: Path) -> None:
    """docs/python-api.md's worked example, run as written on the real-worker DB."""
    text = (REPO / "docs" / "python-api.md").read_text()
    (code,) = re.findall(r"## A worked example.*?```python\n(.*?)```", text, flags=re.S)
    exec(compile(code, "docs/python-api.md", "exec"), {"DB": str(real_db)})  # noqa: S102


def test_the_api_runs_without_torch(hand_ro: dict[str, Path]) -> None:
    """unitscope and its API import and answer with torch made unimportable (the server's dependencies only)."""
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import unitscope\n"
        f"db = unitscope.open({str(hand_ro['db'])!r})\n"
        "print(db.run().layer('mixed4c').scores().aggregate('count(*)').fetchall()[0][0])\n"
        "assert not any(m.split('.')[0] in ('torch', 'torchvision', 'worker', 'app') for m in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == str(len(LAYERS["mixed4c"]))
