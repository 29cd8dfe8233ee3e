"""`/skipped`: the files the worker could not use, and why."""

from __future__ import annotations

from pydantic import BaseModel

from app.data.units import skipped
from app.params import RunParams
from app.render import Page
from unitscope.data.runs import find_run
from unitscope.data.source import Source


class SkippedFile(BaseModel):
    """A file the worker could not use."""

    file_id: int
    path: str
    reason: str


class SkippedContext(BaseModel):
    """`/skipped`: the files the worker skipped, and why."""

    run_id: int | None
    count: int
    files: list[SkippedFile]


def build(source: Source, p: RunParams) -> SkippedContext:
    """`/skipped`: the run's skipped files with their reasons."""
    run = find_run(source, p.run)
    if run is None:
        return SkippedContext(run_id=None, count=0, files=[])
    files = [SkippedFile(file_id=f, path=path, reason=reason) for f, path, reason in skipped(source, run)]
    return SkippedContext(run_id=run.run_id, count=len(files), files=files)


PAGE: Page[SkippedContext] = Page("skipped.html", lambda ctx, urls: urls.skipped())
