"""Image files by id: resolved strictly inside the image folder, thumbnails made once and cached on disk."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from app.params import THUMB_SIZES
from unitscope.errors import NotFound

log = logging.getLogger("app.image_files")

_THUMB_VERSION = "1"  # bump when the thumbnail recipe changes, so stale cache files are not reused


@dataclass(frozen=True)
class ImageFile:
    """A resolved image file and a validator for HTTP caching."""

    path: Path
    etag: str
    size: int


def resolve(root: Path, relative: str) -> ImageFile:
    """The file at root/relative, only if it resolves (symlinks included) to a regular file inside root."""
    try:
        root_real = root.resolve(strict=True)
        target = (root_real / relative).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, loop, NUL byte
        raise NotFound("the image file is not available") from None
    if not target.is_relative_to(root_real) or target == root_real:
        log.warning("refused image path outside %s: %r", root_real, relative)
        raise NotFound("the image file is not available")
    try:
        st = target.stat()
    except OSError:
        raise NotFound("the image file is not available") from None
    if not target.is_file():
        raise NotFound("the image file is not available")
    return ImageFile(path=target, etag=f'"{st.st_mtime_ns:x}-{st.st_size:x}"', size=st.st_size)


def read(image: ImageFile) -> bytes:
    """The file's bytes, or NotFound if it vanished since it was resolved."""
    try:
        return image.path.read_bytes()
    except OSError:
        raise NotFound("the image file is not available") from None


def _encode_thumbnail(source: Path, size: int) -> bytes:
    with Image.open(source) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
        rgb = img.convert("RGB")
    rgb.thumbnail((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=85)
    return out.getvalue()


def thumbnail_size(asked: int) -> int:
    """The fixed edge a thumbnail of `asked` px is made at: the next of THUMB_SIZES up (the largest past it)."""
    return next((size for size in THUMB_SIZES if size >= asked), THUMB_SIZES[-1])


def _thumbnail_key(image: ImageFile, size: int) -> str:
    # The source's path, mtime and size, the edge and the recipe: a changed source never gets an
    # old thumbnail.
    return hashlib.sha256(f"{image.path}|{image.etag}|{size}|{_THUMB_VERSION}".encode()).hexdigest()


def thumbnail_etag(image: ImageFile, size: int) -> str:
    """The ETag of a thumbnail, known without making it."""
    return f'"t{_thumbnail_key(image, size)[:32]}"'


def thumbnail(image: ImageFile, size: int, cache_dir: Path) -> bytes:
    """A JPEG thumbnail at most size x size: made once, then read from the disk cache."""
    key = _thumbnail_key(image, size)
    cached = cache_dir / key[:2] / f"{key}.jpg"
    try:
        return cached.read_bytes()
    except OSError:
        pass  # not made yet
    try:
        data = _encode_thumbnail(image.path, size)
    except Exception as exc:  # a file that no longer decodes must not become a 500
        log.warning("cannot make a thumbnail of %s: %s", image.path, exc)
        raise NotFound("the image file cannot be decoded") from None
    tmp = None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, cached)  # atomic: a concurrent reader sees the whole file or none
    except OSError as exc:
        log.warning("thumbnail cache %s not writable: %s", cache_dir, exc)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return data
