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
from app.params import ID_MAX, NAME_MAX, RunParams, SearchParams, optional_whole
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
         q: Annotated[str, Query(max_length=NAME_MAX, description="`mixed4c 447`, `mixed4c/447`, or a search text")] = "",
         run: Annotated[optional_whole(0, ID_MAX), Query(description="the run of the page the box is on (its header "
                                                          "form sends it); default: none")] = None,
         ) -> HTMLResponse:
    """A unit's page for `layer unit`: of `run` when it has the layer, else of the latest run that has it; else
    `/units?q=…` (303, with a link for a client that does not follow it)."""
    target = page.jump_target(db, q, render.urls_for(request, RunParams(run=run)), run)
    return HTMLResponse(f'<a href="{html.escape(target)}">{html.escape(target)}</a>', status_code=303,
                        headers={"Location": target})
