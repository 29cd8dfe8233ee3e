"""`/layers/{layer}/ablation`: the layer's selective units silenced, against random groups of as many."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import DbDep, LayerName, ScoreQuery
from app.errors import ERROR_RESPONSES
from app.pages import ablation as page
from app.pages.ablation import AblationContext
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)


@twin(router, "/layers/{layer}/ablation", page.PAGE, summary="A layer's ablation")
def ablation(layer: LayerName, p: ScoreQuery, db: DbDep) -> AblationContext:
    """Top-1 accuracy on the category and on the rest with the selective units ablated, against random groups of as
    many units (python -m worker ablate); `available` is false until that has run."""
    return page.build(db, layer, p)
