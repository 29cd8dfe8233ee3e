"""`/compare`: two runs side by side, by relative depth, and their units' SI paired when the model is one."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import CompareQuery, DbDep
from app.errors import ERROR_RESPONSES
from app.pages import compare as page
from app.pages.compare import CompareContext
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)


@twin(router, "/compare", page.PAGE, summary="Two runs side by side")
def compare(p: CompareQuery, db: DbDep) -> CompareContext:
    """Per layer of runs a and b, by relative depth: selective units, and in_bottom >= base rate among them
    and the rest; with the same model, each unit's SI of `layer` in a against b, with Spearman's rho."""
    return page.build(db, p)
