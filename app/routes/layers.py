"""`/layers` (all layers side by side) and `/layers/{layer}` (the study's figure 2), and its CSV."""

from __future__ import annotations

import csv
import io

from fastapi import APIRouter
from fastapi.responses import Response

from app import contexts, pages
from app.deps import DbDep, LayerName, ScoreQuery
from app.errors import ERROR_RESPONSES
from app.models import LayerContext, LayerSummary
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)


@twin(router, "/layers", pages.LAYERS, summary="All layers")
def layers(p: ScoreQuery, db: DbDep) -> list[LayerSummary]:
    """Every layer: units, selective units, and selective units with in_bottom >= the base rate."""
    return contexts.layers(db, p)


# Before the layer's twin: /api/layers/{layer} would otherwise take "<layer>.csv" for a layer name.
@router.get(
    "/api/layers/{layer}.csv", response_class=Response, tags=["api"], summary="A layer's units as CSV",
    responses={200: {"content": {"text/csv": {}}, "description": "unit,si,in_top,in_bottom,selective"}},
)
def layer_csv(layer: LayerName, p: ScoreQuery, db: DbDep) -> Response:
    """The table of /api/layers/{layer} as CSV."""
    ctx = contexts.layer(db, layer, p)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["unit", "si", "in_top", "in_bottom", "selective"])
    for u in ctx.units:
        writer.writerow([u.unit, "" if u.si is None else repr(u.si), u.in_top, u.in_bottom, int(u.selective)])
    name = f"{ctx.layer}_{ctx.category}_k{ctx.k}_{ctx.pos_stat}_{ctx.neg_stat}_{ctx.si_stat}_run{ctx.run_id}.csv"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@twin(router, "/layers/{layer}", pages.LAYER, summary="A layer's units")
def layer(layer: LayerName, p: ScoreQuery, db: DbDep) -> LayerContext:
    """(si, in_top, in_bottom) of every unit of the layer, with the base rate."""
    return contexts.layer(db, layer, p)
