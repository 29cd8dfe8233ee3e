"""`/healthz`: the compose healthcheck."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app import queries
from app.db import Database
from app.errors import ERROR_RESPONSES
from app.models import Health
from worker import schema

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["health"], summary="Health",
            responses={503: ERROR_RESPONSES[503]})
def healthz(request: Request) -> Health:
    """200 when the database can be opened and read, 503 (error shape) otherwise."""
    db: Database = request.app.state.db
    with db.reader() as reader:
        runs = queries.complete_run_count(reader)
    return Health(status="ok", runs=runs, schema_version=schema.SCHEMA_VERSION)
