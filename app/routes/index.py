"""`/`: the runs in the DB and the layers of the shown run."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app import contexts, render
from app.db import DbDep
from app.errors import ERROR_RESPONSES
from app.models import IndexContext
from app.params import RunQuery

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/api/", response_model=IndexContext, tags=["api"], summary="Runs and layers")
def index_json(p: RunQuery, db: DbDep) -> IndexContext:
    """The complete runs (newest first) and the layers of the latest one, or of ?run=."""
    return contexts.index(db, p)


@router.get("/", response_class=HTMLResponse, tags=["pages"], summary="Runs and layers (HTML)")
def index_page(request: Request, p: RunQuery, db: DbDep) -> HTMLResponse:
    """HTML of /api/."""
    urls = render.urls_for(request, p)
    return render.page(request, "index.html", urls, urls.index(), contexts.index(db, p))
