"""`/layers/{layer}/units/{unit}`: the study's figure 1 for one unit, and its every response as CSV or Parquet."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import duckdb
from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import render
from app.deps import DbDep, LayerName, RunQuery, UnitId, UnitQuery
from app.errors import ERROR_RESPONSES
from app.pages import unit as page
from app.pages.unit import UnitContext
from app.twin import twin
from unitscope.data.rankings import RESPONSE_COLUMNS, all_responses
from unitscope.data.runs import require_run, require_unit

router = APIRouter(responses=ERROR_RESPONSES)


@twin(router, "/layers/{layer}/units/{unit}", page.PAGE, summary="A unit")
def unit(request: Request, layer: LayerName, unit: UnitId, p: UnitQuery, db: DbDep) -> UnitContext:
    """The unit's strongest positive, near-zero and strongest negative images, scores and histogram."""
    return page.build(db, layer, unit, p, render.urls_for(request, p))



MEDIA = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


@router.get(
    "/api/layers/{layer}/units/{unit}/responses.{fmt}", response_class=Response, tags=["api"],
    summary="A unit's every response, as CSV or Parquet",
    responses={200: {"content": {m.split(";")[0]: {} for m in MEDIA.values()}, "description": ",".join(RESPONSE_COLUMNS)}},
)
def unit_responses(layer: LayerName, unit: UnitId, fmt: Literal["csv", "parquet"], p: RunQuery, db: DbDep) -> Response:
    """Every image's mean, max and min of the unit's pre-ReLU map, with its path and class, in image id order."""
    run = require_run(db, p.run)
    require_unit(run, layer, unit)
    columns = all_responses(db, run, layer, unit)
    body = _parquet(columns) if fmt == "parquet" else render.csv_text(
        RESPONSE_COLUMNS, zip(*(columns[c].tolist() for c in RESPONSE_COLUMNS), strict=True))
    return render.download(body, MEDIA[fmt], f"{layer}_unit{unit}_run{run.run_id}.{fmt}")


def _parquet(columns: dict) -> bytes:
    """The columns as one Parquet file, written by a private in-memory DuckDB (the DB itself stays read-only)."""
    with tempfile.TemporaryDirectory(prefix="unitscope-export-") as tmp, duckdb.connect() as con:
        path = Path(tmp) / "unit.parquet"
        con.register("unit_responses", {c: columns[c] for c in RESPONSE_COLUMNS})
        con.execute(f"COPY unit_responses TO '{path}' (FORMAT parquet)")
        return path.read_bytes()
