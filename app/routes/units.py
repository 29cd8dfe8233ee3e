"""`/layers/{layer}/units/{unit}`: the study's figure 1 for one unit."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app import contexts, plots, render
from app.db import DbDep
from app.errors import ERROR_RESPONSES
from app.models import UnitContext
from app.params import LayerName, UnitId, UnitQuery

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/api/layers/{layer}/units/{unit}", response_model=UnitContext, tags=["api"], summary="A unit")
def unit_json(request: Request, layer: LayerName, unit: UnitId, p: UnitQuery, db: DbDep) -> UnitContext:
    """The unit's strongest positive, near-zero and strongest negative images, scores and histogram."""
    return contexts.unit(db, layer, unit, p, render.urls_for(request, p))


@router.get("/layers/{layer}/units/{unit}", response_class=HTMLResponse, tags=["pages"], summary="A unit (HTML)")
def unit_page(request: Request, layer: LayerName, unit: UnitId, p: UnitQuery, db: DbDep) -> HTMLResponse:
    """HTML of /api/layers/{layer}/units/{unit}."""
    urls = render.urls_for(request, p)
    ctx = contexts.unit(db, layer, unit, p, urls)
    return render.page(request, "unit.html", urls, urls.unit(layer, unit), ctx, params=p,
                       figure=plots.unit_histogram(ctx), categories=contexts.category_names(db, p.run))
