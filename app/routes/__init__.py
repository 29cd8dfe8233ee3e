"""All routers, gathered; one module per resource."""

from __future__ import annotations

from fastapi import APIRouter

from app.routes import (
    ablation,
    categories,
    claims,
    classes,
    compare,
    docs,
    health,
    images,
    index,
    layers,
    search,
    skipped,
    units,
)

# Order matters once: layers registers /api/layers/{layer}.csv before /api/layers/{layer}.
ROUTERS: tuple[APIRouter, ...] = (
    index.router, layers.router, ablation.router, units.router, classes.router, claims.router, categories.router, compare.router,
    skipped.router, search.router, images.router, health.router, docs.router,
)
