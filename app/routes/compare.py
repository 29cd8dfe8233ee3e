"""`/compare`: two runs side by side, by relative depth, and their units' SI paired when the model is one."""

from __future__ import annotations

from fastapi import APIRouter

from app import compare as comparison
from app import pages
from app.compare import CompareContext
from app.deps import CompareQuery, DbDep
from app.errors import ERROR_RESPONSES
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)


@twin(router, "/compare", pages.COMPARE, summary="Two runs side by side")
def compare(p: CompareQuery, db: DbDep) -> CompareContext:
    """Per layer of runs a and b, by relative depth: selective units, and in_bottom >= base rate among them
    and the rest; with the same model, each unit's SI of `layer` in a against b, with Spearman's rho."""
    return comparison.compare(db, p)
