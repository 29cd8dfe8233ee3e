"""`/`: the complete runs, and the layers of the one shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
    image_notice: str | None = Field(None, description="why the shown run's images cannot be served, and what to "
                                     "start the server with; null when they can")


def build(source: Source, p: RunParams, serves: Callable[[Path], bool] = lambda _: True) -> IndexContext:
    """`/`: runs, and the layers of the shown run. serves: whether the server may serve the images of a folder (its
    --image-roots), so that the page says so where thumbnails would otherwise break without a word."""
    run = find_run(source, p.run)
    notice = None
    if run is not None and not serves(Path(run.images_root)):
        notice = (f"run {run.run_id}'s images are in {run.images_root}, which this server does not serve: the DB names "
                  f"the folder, and only the server's settings may open it. Start it with --image-roots "
                  f"{run.images_root} (UNITSCOPE_IMAGE_ROOTS), or --images-root DIR where the files moved")
    layers = [] if run is None else [
        LayerInfo(name=name, units=units, position=position, module=module)
        for name, (units, position, module) in run.layers.items()
    ]
    return IndexContext(
        run=None if run is None else run_info(run),
        runs=[run_info(r) for r in runs(source)],
        layers=layers,
        image_notice=notice,
    )


PAGE: Page[IndexContext] = Page("index.html", lambda ctx, urls: urls.index())
