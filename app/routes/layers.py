"""`/layers` (all layers side by side) and `/layers/{layer}` (the study's figure 2), and its CSV."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import heavy, render
from app.config import Settings
from app.data.db import Reader
from app.deps import DbDep, LayerName, ScoreQuery, SettingsDep
from app.errors import ERROR_RESPONSES
from app.pages import layer as layer_page
from app.pages import layers as layers_page
from app.pages.layer import LayerContext, UnitScore
from app.pages.layers import LayerSummary
from app.params import ScoreParams
from app.twin import twin

router = APIRouter(responses=ERROR_RESPONSES)

# The fields of the JSON's unit rows, in their order: the CSV drops none and adds none.
CSV_COLUMNS = tuple(UnitScore.model_fields)


@twin(router, "/layers", layers_page.PAGE, summary="All layers")
def layers(p: ScoreQuery, db: DbDep) -> list[LayerSummary]:
    """Every layer: units, selective units, and selective units with in_bottom >= the base rate."""
    return layers_page.build(db, p)


# Before the layer's twin: /api/layers/{layer} would otherwise take "<layer>.csv" for a layer name.
@router.get(
    "/api/layers/{layer}.csv", response_class=Response, tags=["api"], summary="A layer's units as CSV",
    responses={200: {"content": {"text/csv": {}}, "description": ",".join(CSV_COLUMNS)}},
)
async def layer_csv(request: Request, layer: LayerName, p: ScoreQuery, db: DbDep, settings: SettingsDep) -> Response:
    """The unit rows of /api/layers/{layer} as CSV: one column per field of a row, in its order."""
    return await heavy.answer(request, lambda: _csv(_layer(layer, p, db, settings)), db.interrupt)


def _csv(ctx: LayerContext) -> Response:
    rows = ([getattr(u, c) for c in CSV_COLUMNS] for u in ctx.units)
    name = f"{ctx.layer}_{ctx.category}_k{ctx.k}_{ctx.pos_stat}_{ctx.neg_stat}_{ctx.si_stat}_run{ctx.run_id}.csv"
    return render.download(render.csv_text(CSV_COLUMNS, rows), "text/csv; charset=utf-8", name)


@twin(router, "/layers/{layer}", layer_page.PAGE, summary="A layer's units")
def layer(layer: LayerName, p: ScoreQuery, db: DbDep, settings: SettingsDep) -> LayerContext:
    """(si, in_top, in_bottom) of every unit of the layer, with the base rate, chance levels, AUROC and the null."""
    return _layer(layer, p, db, settings)


def _layer(layer: str, p: ScoreParams, db: Reader, settings: Settings) -> LayerContext:
    return layer_page.build(db, layer, p, permutations=settings.null_permutations, seed=settings.null_seed)
