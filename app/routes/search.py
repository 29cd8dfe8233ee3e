"""`/units` (label search across layers and runs) and `/jump` (the header's box)."""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app import render
from app.deps import DbDep
from app.errors import ERROR_RESPONSES
from app.pages import search as page
from app.pages.search import UnitsContext
from app.params import NAME_MAX, SearchParams
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)
SearchQuery = Annotated[SearchParams, Query()]


@twin(router, "/units", page.PAGE, summary="Find units by label")
def units(request: Request, p: SearchQuery, db: DbDep) -> UnitsContext:
    """Units with a class or WordNet synset among what most excites or inhibits them (or a label) that contains q,
    sorted by the matching term's AUROC, or by SI, d′ or q."""
    return page.build(db, p, render.urls_for(request, p))


# Documented as HTML: its errors are pages, like every route outside /api.
@router.get("/jump", response_class=HTMLResponse, status_code=303, tags=["navigation"],
            summary="Go to a unit or search")
def jump(request: Request, db: DbDep,
         q: Annotated[str, Query(max_length=NAME_MAX, description="`mixed4c 447`, `mixed4c/447`, or a search text")] = ""
         ) -> HTMLResponse:
    """A unit's page for `layer unit` (of the latest run), else `/units?q=…` (303, with a link for a client that
    does not follow it)."""
    target = page.jump_target(db, q, render.urls_for(request))
    return HTMLResponse(f'<a href="{html.escape(target)}">{html.escape(target)}</a>', status_code=303,
                        headers={"Location": target})
