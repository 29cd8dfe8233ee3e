"""`/layers` (all layers side by side) and `/layers/{layer}` (the study's figure 2)."""

from __future__ import annotations

import csv
import io

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app import contexts, plots, render
from app.db import DbDep
from app.errors import ERROR_RESPONSES
from app.models import LayerContext, LayerSummary
from app.params import LayerName, ScoreQuery

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/api/layers", response_model=list[LayerSummary], tags=["api"], summary="All layers")
def layers_json(p: ScoreQuery, db: DbDep) -> list[LayerSummary]:
    """Every layer: units, selective units, and selective units with in_bottom >= the base rate."""
    return contexts.layers(db, p)


@router.get("/layers", response_class=HTMLResponse, tags=["pages"], summary="All layers (HTML)")
def layers_page(request: Request, p: ScoreQuery, db: DbDep) -> HTMLResponse:
    """HTML of /api/layers, with a chart."""
    urls = render.urls_for(request, p)
    summaries = contexts.layers(db, p)
    return render.page(request, "layers.html", urls, urls.layers(), summaries, params=p,
                       figure=plots.layers_chart(summaries), categories=contexts.category_names(db, p.run))


@router.get(
    "/api/layers/{layer}.csv", response_class=Response, tags=["api"], summary="A layer's units as CSV",
    responses={200: {"content": {"text/csv": {}}, "description": "unit,si,in_top,in_bottom,selective"}},
)
def layer_csv(layer: LayerName, p: ScoreQuery, db: DbDep) -> Response:
    """The table of /api/layers/{layer} as CSV."""
    ctx = contexts.layer(db, layer, p)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["unit", "si", "in_top", "in_bottom", "selective"])
    for u in ctx.units:
        writer.writerow([u.unit, "" if u.si is None else repr(u.si), u.in_top, u.in_bottom, int(u.selective)])
    name = f"{ctx.layer}_{ctx.category}_k{ctx.k}_{ctx.pos_stat}_{ctx.neg_stat}_{ctx.si_stat}_run{ctx.run_id}.csv"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/api/layers/{layer}", response_model=LayerContext, tags=["api"], summary="A layer's units")
def layer_json(layer: LayerName, p: ScoreQuery, db: DbDep) -> LayerContext:
    """(si, in_top, in_bottom) of every unit of the layer, with the base rate."""
    return contexts.layer(db, layer, p)


@router.get("/layers/{layer}", response_class=HTMLResponse, tags=["pages"], summary="A layer (HTML)")
def layer_page(request: Request, layer: LayerName, p: ScoreQuery, db: DbDep) -> HTMLResponse:
    """HTML of /api/layers/{layer}: the scatter and a sortable table."""
    urls = render.urls_for(request, p)
    ctx = contexts.layer(db, layer, p)
    unit_urls = [urls.unit(layer, u.unit) for u in ctx.units]
    # Table rows as plain tuples: up to 1,024 of them, and Jinja is slow at attribute lookups.
    rows = [(u.unit, url, -1 if u.si is None else u.si, render.number(u.si), u.in_top, u.in_bottom, u.selective)
            for u, url in zip(ctx.units, unit_urls)]
    return render.page(request, "layer.html", urls, urls.layer(layer), ctx, params=p, rows=rows,
                       figure=plots.layer_scatter(ctx, unit_urls), categories=contexts.category_names(db, p.run))

