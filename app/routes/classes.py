"""`/layers/{layer}/units/{unit}/classes`: a unit's mean and median response to every class."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import DbDep, LayerName, UnitId
from app.errors import ERROR_RESPONSES
from app.pages import classes as page
from app.pages.classes import ClassParams, ClassProfileContext
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)

ClassQuery = Annotated[ClassParams, Query()]


@twin(router, "/layers/{layer}/units/{unit}/classes", page.PAGE, summary="A unit's class profile")
def classes(layer: LayerName, unit: UnitId, p: ClassQuery, db: DbDep) -> ClassProfileContext:
    """Every class's mean and median response, highest mean first, with the classes that beat the category."""
    return page.build(db, layer, unit, p)
