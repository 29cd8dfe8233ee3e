"""`/claims`: the study's claims, each tested on this DB against its control."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app import claims, pages, render
from app.deps import DbDep, SettingsDep
from app.errors import ERROR_RESPONSES
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)

ClaimsQuery = Annotated[claims.ClaimsParams, Query()]


@twin(router, "/claims", pages.CLAIMS, summary="The study's claims")
def claims_page(
    request: Request, p: ClaimsQuery, db: DbDep, settings: SettingsDep
) -> claims.ClaimsContext:
    """Each claim: its test on this DB, the control, a verdict and a link to the evidence."""
    return claims.context(db, p, render.urls_for(request, p), permutations=settings.null_permutations,
                          seed=settings.null_seed)
