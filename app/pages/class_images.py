"""`/layers/{layer}/units/{unit}/classes/{wnid}`: one class's images, ranked by the unit's response (the class
profile's names link here)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.pages.classes import ClassParams
from app.params import THUMB_SIZES
from app.render import Page
from app.urls import Urls
from unitscope.data.images import category_wnids, image_index
from unitscope.data.rankings import class_ranking
from unitscope.data.runs import require_category, require_run, require_unit
from unitscope.data.source import Source
from unitscope.errors import NotFound

THUMBNAIL = THUMB_SIZES[1]


class ClassImage(BaseModel):
    """One of the class's images."""

    image: int
    value: float = Field(description="the unit's response on stat")
    rank: int = Field(description="its rank among every image of the run by that response (1 = the strongest)")
    url: str
    thumbnail: str


class ClassImagesContext(BaseModel):
    """A class's images for one unit, strongest first."""

    run_id: int
    layer: str
    unit: int
    wnid: str
    class_name: str
    stat: str
    is_category: bool = Field(description="the class is one of the category's")
    images_in_run: int
    images: list[ClassImage]


def build(source: Source, layer: str, unit: int, wnid: str, p: ClassParams, urls: Urls) -> ClassImagesContext:
    """The class's every image in the run, by the unit's response on p.stat."""
    run = require_run(source, p.run)
    require_unit(run, layer, unit)
    require_category(run, p.category)
    index = image_index(source, run.run_id)
    if wnid not in index.wnids:
        raise NotFound(f"no images of class {wnid!r} in run {run.run_id}")
    ranked = class_ranking(source, run, layer, unit, wnid, p.stat)
    name = index.names[index.wnids.index(wnid)]
    return ClassImagesContext(
        run_id=run.run_id, layer=layer, unit=unit, wnid=wnid, class_name=name, stat=p.stat,
        is_category=wnid in category_wnids(source, run.run_id, p.category), images_in_run=run.images,
        images=[ClassImage(image=i, value=v, rank=r, url=urls.image(run.run_id, i),
                           thumbnail=urls.image(run.run_id, i, THUMBNAIL)) for i, v, r in ranked])


PAGE: Page[ClassImagesContext] = Page(
    "class_images.html", lambda ctx, urls: urls.class_images(ctx.layer, ctx.unit, ctx.wnid, ctx.stat))
