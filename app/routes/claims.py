"""`/claims`: the study's claims, each tested on this DB against its control."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app import render
from app.deps import DbDep, SettingsDep
from app.errors import ERROR_RESPONSES
from app.pages import claims
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)

ClaimsQuery = Annotated[claims.ClaimsParams, Query()]


@twin(router, "/claims", claims.PAGE, summary="The study's claims")
def claims_page(
    request: Request, p: ClaimsQuery, db: DbDep, settings: SettingsDep
) -> claims.ClaimsContext:
    """Each claim: its test on this DB, the control, a verdict and a link to the evidence."""
    return claims.build(db, p, render.urls_for(request, p), permutations=settings.null_permutations,
                          seed=settings.null_seed)
