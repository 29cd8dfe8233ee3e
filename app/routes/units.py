"""`/layers/{layer}/units/{unit}`: the study's figure 1 for one unit."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app import render
from app.deps import DbDep, LayerName, UnitId, UnitQuery
from app.errors import ERROR_RESPONSES
from app.pages import unit as page
from app.pages.unit import UnitContext
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)


@twin(router, "/layers/{layer}/units/{unit}", page.PAGE, summary="A unit")
def unit(request: Request, layer: LayerName, unit: UnitId, p: UnitQuery, db: DbDep) -> UnitContext:
    """The unit's strongest positive, near-zero and strongest negative images, scores and histogram."""
    return page.build(db, layer, unit, p, render.urls_for(request, p))

