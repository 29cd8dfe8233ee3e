"""What a route takes from the request: a read-only DB cursor, path parameters and query parameter models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from app.config import Settings
from app.data.db import Database, Reader
from app.params import (
    ID_MAX,
    NAME_MAX,
    CategoriesParams,
    CompareParams,
    ImageParams,
    RunParams,
    ScoreParams,
    UnitParams,
    whole,
)


def get_reader(request: Request) -> Iterator[Reader]:
    """One read-only cursor per request."""
    db: Database = request.app.state.db
    with db.reader() as reader:
        yield reader


DbDep = Annotated[Reader, Depends(get_reader)]


def get_settings(request: Request) -> Settings:
    """The server's settings (e.g. the permutation null's size and seed)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]

LayerName = Annotated[str, Path(max_length=NAME_MAX, description="a layer name of the run, as listed by /api/layers")]
UnitId = Annotated[whole(0, ID_MAX), Path(description="0-based unit (channel) index")]
ImageId = Annotated[whole(0, ID_MAX), Path(description="image id within the run")]

RunQuery = Annotated[RunParams, Query()]
ScoreQuery = Annotated[ScoreParams, Query()]
UnitQuery = Annotated[UnitParams, Query()]
ImageQuery = Annotated[ImageParams, Query()]
CompareQuery = Annotated[CompareParams, Query()]
CategoriesQuery = Annotated[CategoriesParams, Query()]
