"""`/layers/{layer}/units/{unit}`: the study's figure 1 for one unit."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app import contexts, pages, render
from app.deps import DbDep, LayerName, UnitId, UnitQuery
from app.errors import ERROR_RESPONSES
from app.models import UnitContext
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)


@twin(router, "/layers/{layer}/units/{unit}", pages.UNIT, summary="A unit")
def unit(request: Request, layer: LayerName, unit: UnitId, p: UnitQuery, db: DbDep) -> UnitContext:
    """The unit's strongest positive, near-zero and strongest negative images, scores and histogram."""
    return contexts.unit(db, layer, unit, p, render.urls_for(request, p))
