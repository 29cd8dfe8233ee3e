"""`/categories`: every category of a run, layer by layer."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import CategoriesQuery, DbDep
from app.errors import ERROR_RESPONSES
from app.pages import categories as page
from app.pages.categories import CategoriesContext
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)


@twin(router, "/categories", page.PAGE, summary="Every category, layer by layer")
def categories(p: CategoriesQuery, db: DbDep) -> CategoriesContext:
    """For each category of the run: per layer, selective units, and in_bottom >= base rate among them and the rest."""
    return page.build(db, p)
