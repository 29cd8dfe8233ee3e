"""`/`: the complete runs, and the layers of the one shown."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.pages.common import RunInfo, run_info
from app.params import RunParams
from app.render import Page
from unitscope.data.runs import find_run, runs
from unitscope.data.source import Source


class LayerInfo(BaseModel):
    """A layer of a run."""

    name: str
    units: int
    position: int
    module: str


class IndexContext(BaseModel):
    """`/`: the complete runs and the selected run's layers."""

    run: RunInfo | None = Field(description="the run shown (the latest, or ?run=)")
    runs: list[RunInfo]
    layers: list[LayerInfo]


def build(source: Source, p: RunParams) -> IndexContext:
    """`/`: runs, and the layers of the shown run."""
    run = find_run(source, p.run)
    layers = [] if run is None else [
        LayerInfo(name=name, units=units, position=position, module=module)
        for name, (units, position, module) in run.layers.items()
    ]
    return IndexContext(
        run=None if run is None else run_info(run),
        runs=[run_info(r) for r in runs(source)],
        layers=layers,
    )


PAGE: Page[IndexContext] = Page("index.html", lambda ctx, urls: urls.index())
