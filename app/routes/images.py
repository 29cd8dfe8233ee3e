"""`/images/{id}`: images by id only, never by a path from the request; thumbnails cached on disk. And the images
feature visualisation optimised, from the DB."""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from app import image_files
from app.config import Settings
from app.deps import DbDep, ImageId, ImageQuery, LayerName, RunQuery, UnitId
from app.errors import ERROR_RESPONSES
from app.params import whole
from unitscope.data.images import image_path
from unitscope.data.interventions import visualization_png
from unitscope.data.runs import require_run, require_unit
from unitscope.errors import NotFound

router = APIRouter(responses=ERROR_RESPONSES)
log = logging.getLogger("app.routes.images")

# Ids name an image within a run, and a new DB may reuse them: revalidate after an hour.
_CACHE_CONTROL = "public, max-age=3600"
_READ_WHOLE = 32 * 2**20  # bytes; larger files are streamed


@router.get(
    "/images/{image_id}", response_class=Response, tags=["images"], summary="An image or its thumbnail",
    responses={200: {"content": {"image/jpeg": {}, "image/*": {}}, "description": "the image"},
               304: {"description": "not modified"}},
)
def image(request: Request, image_id: ImageId, p: ImageQuery, db: DbDep) -> Response:
    """The image file of `image_id` in the run, or a JPEG thumbnail at most `size` px on a side, made at the next of
    the fixed thumbnail sizes up."""
    settings: Settings = request.app.state.settings
    run = require_run(db, p.run)
    relative = image_path(db, run.run_id, image_id)
    root = settings.images_root if settings.images_root is not None else Path(run.images_root)
    if settings.images_root is None and not settings.serves_images_from(root):
        # The DB names the folder; only the operator's settings may let the server read it.
        log.warning("refused images of run %s: %s is not under --image-roots", run.run_id, root)
        raise NotFound(f"run {run.run_id}'s image folder is not among the server's image roots "
                       "(--image-roots, UNITSCOPE_IMAGE_ROOTS)")
    found = image_files.resolve(root, relative)
    size = None if p.size is None else image_files.thumbnail_size(p.size)
    headers = {"Cache-Control": _CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    headers["ETag"] = found.etag if size is None else image_files.thumbnail_etag(found, size)
    if headers["ETag"] in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if size is not None:
        data = image_files.thumbnail(found, size, settings.thumbnail_dir)
        return Response(data, media_type="image/jpeg", headers=headers)
    media_type = mimetypes.guess_type(found.path.name)[0] or ""
    if not media_type.startswith("image/"):
        media_type = "application/octet-stream"
    if found.size <= _READ_WHOLE:
        # Read now: a file that vanishes mid-send would otherwise break the response.
        return Response(image_files.read(found), media_type=media_type, headers=headers)
    return FileResponse(found.path, media_type=media_type, headers=headers)


@router.get(
    "/images/visualizations/{layer}/{unit}/{direction}/{index}.png", response_class=Response, tags=["images"],
    summary="An optimised image of a unit", responses={200: {"content": {"image/png": {}}, "description": "PNG"}},
)
def visualization(request: Request, layer: LayerName, unit: UnitId, direction: Literal["positive", "negative"],
                  index: Annotated[whole(0, 1000), PathParam(description="0-based")], p: RunQuery, db: DbDep) -> Response:
    """One of the images python -m worker visualize optimised to drive the unit up (positive) or down (negative)."""
    run = require_run(db, p.run)
    require_unit(run, layer, unit)
    data = visualization_png(db, run, layer, unit, direction, index)
    if data is None:
        raise NotFound(f"no {direction} visualization {index} of unit {unit} of {layer} in run {run.run_id}")
    # The URL stays when a rerun replaces the image: the ETag (its digest) tells a browser's cache.
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
               "ETag": f'"{hashlib.blake2b(data, digest_size=12).hexdigest()}"'}
    if headers["ETag"] in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/png", headers=headers)
