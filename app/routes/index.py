"""`/`: the runs in the DB and the layers of the shown run."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import DbDep, RunQuery, SettingsDep
from app.errors import ERROR_RESPONSES
from app.pages import index as page
from app.pages.index import IndexContext
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)


@twin(router, "/", page.PAGE, summary="Runs and layers")
def index(p: RunQuery, db: DbDep, settings: SettingsDep) -> IndexContext:
    """The complete runs (newest first) and the layers of the latest one, or of ?run=."""
    return page.build(db, p, settings.serves_images_from if settings.images_root is None else lambda _: True)
