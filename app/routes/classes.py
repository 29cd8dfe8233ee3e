"""`/layers/{layer}/units/{unit}/classes`: a unit's mean and median response to every class; `…/classes/{wnid}`: one
class's images ranked by the unit's response."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from app import render
from app.deps import DbDep, LayerName, UnitId
from app.errors import ERROR_RESPONSES
from app.pages import class_images
from app.pages import classes as page
from app.pages.class_images import ClassImagesContext
from app.pages.classes import ClassParams, ClassProfileContext
from app.params import NAME_MAX
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)

ClassQuery = Annotated[ClassParams, Query()]


@twin(router, "/layers/{layer}/units/{unit}/classes", page.PAGE, summary="A unit's class profile")
def classes(layer: LayerName, unit: UnitId, p: ClassQuery, db: DbDep) -> ClassProfileContext:
    """Every class's mean and median response, highest mean first, with the classes that beat the category."""
    return page.build(db, layer, unit, p)


@twin(router, "/layers/{layer}/units/{unit}/classes/{wnid}", class_images.PAGE, summary="A class's images for a unit")
def class_images_of(request: Request, layer: LayerName, unit: UnitId,
                    wnid: Annotated[str, Path(max_length=NAME_MAX, description="the class's WNID")],
                    p: ClassQuery, db: DbDep) -> ClassImagesContext:
    """The class's every image in the run, by the unit's response on stat, strongest first, with each one's rank
    among all the run's images."""
    return class_images.build(db, layer, unit, wnid, p, render.urls_for(request, p))
