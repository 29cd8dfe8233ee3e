"""`/skipped`: the files the worker skipped, and why."""

from __future__ import annotations

from fastapi import APIRouter

from app import contexts, pages
from app.deps import DbDep, RunQuery
from app.errors import ERROR_RESPONSES
from app.models import SkippedContext
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)


@twin(router, "/skipped", pages.SKIPPED, summary="Skipped files")
def skipped(p: RunQuery, db: DbDep) -> SkippedContext:
    """The run's skipped files with the reason each was skipped."""
    return contexts.skipped(db, p)
