"""`/skipped`: the files the worker skipped, and why."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app import contexts, render
from app.db import DbDep
from app.errors import ERROR_RESPONSES
from app.models import SkippedContext
from app.params import RunQuery

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/api/skipped", response_model=SkippedContext, tags=["api"], summary="Skipped files")
def skipped_json(p: RunQuery, db: DbDep) -> SkippedContext:
    """The run's skipped files with the reason each was skipped."""
    return contexts.skipped(db, p)


@router.get("/skipped", response_class=HTMLResponse, tags=["pages"], summary="Skipped files (HTML)")
def skipped_page(request: Request, p: RunQuery, db: DbDep) -> HTMLResponse:
    """HTML of /api/skipped."""
    urls = render.urls_for(request, p)
    return render.page(request, "skipped.html", urls, urls.skipped(), contexts.skipped(db, p))
