"""`/healthz`: the compose healthcheck."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from app.data.db import Database
from app.errors import ERROR_RESPONSES
from unitscope import schema
from unitscope.data.runs import runs
from unitscope.errors import Unavailable

router = APIRouter()


class Health(BaseModel):
    """`/healthz`: the database can be opened."""

    status: str
    runs: int = Field(description="complete runs in the database")
    schema_version: int


@router.get("/healthz", response_model=Health, tags=["health"], summary="Health",
            responses={503: ERROR_RESPONSES[503]})
def healthz(request: Request) -> Health:
    """200 when the database can be opened and read, 503 (error shape) otherwise: no file, not one of ours, or a
    file a request found damaged (until a new one is published)."""
    db: Database = request.app.state.db
    with db.reader() as reader:
        complete = len(runs(reader))
        if reader.generation.broken:
            raise Unavailable(f"the database file cannot be read ({reader.generation.broken}); publish it again")
    return Health(status="ok", runs=complete, schema_version=schema.SCHEMA_VERSION)
