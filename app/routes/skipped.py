"""`/skipped`: the files the worker skipped, and why."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import DbDep, RunQuery
from app.errors import ERROR_RESPONSES
from app.pages import skipped as page
from app.pages.skipped import SkippedContext
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)


@twin(router, "/skipped", page.PAGE, summary="Skipped files")
def skipped(p: RunQuery, db: DbDep) -> SkippedContext:
    """The run's skipped files with the reason each was skipped."""
    return page.build(db, p)
