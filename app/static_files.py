"""`/static`: the pages' scripts and styles, gzip-compressed once and kept in memory, cached for a year under a
versioned URL (`?v=` the file's digest) and revalidated under any other.

Plotly alone is 4.8 MB: uncompressed and uncached it made the first chart page take seconds in the browser
while the server answered in milliseconds.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import mimetypes
import os
from pathlib import Path
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Scope

# app/static links to the repository's static/ (see app.main).
STATIC = Path(__file__).resolve().parent / "static"
COMPRESSIBLE = (".js", ".css", ".json", ".svg", ".html", ".map", ".txt")
MIN_COMPRESS_BYTES = 1024
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"  # may be stored, but asked about (ETag) before each use


@functools.lru_cache(maxsize=256)
def _digest(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def version(name: str) -> str | None:
    """The digest that versions static/`name` in URLs, or None when there is no such file."""
    path = STATIC / name
    try:
        st = path.stat()
    except OSError:
        return None
    return _digest(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _gzipped(path: str, mtime_ns: int, size: int) -> bytes:
    # Level 6: within a few percent of 9's size for minified JavaScript, several times faster to make.
    return gzip.compress(Path(path).read_bytes(), compresslevel=6, mtime=0)


class CompressedStatic(StaticFiles):
    """StaticFiles with gzip for compressible files when the client accepts it, and caching by version."""

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        request = Headers(scope=scope)
        path = Path(full_path)
        asked = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("v", [None])[0]
        current = _digest(path, stat_result.st_mtime_ns, stat_result.st_size)
        cache_control = IMMUTABLE if asked == current else REVALIDATE
        compressible = path.suffix in COMPRESSIBLE and stat_result.st_size >= MIN_COMPRESS_BYTES
        if compressible and "gzip" in request.get("accept-encoding", ""):
            etag = f'"{current}-gz"'
            headers = {"ETag": etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding",
                       "Content-Encoding": "gzip"}
            if etag in request.get("if-none-match", ""):
                return NotModifiedResponse(Headers(headers))
            body = _gzipped(str(path), stat_result.st_mtime_ns, stat_result.st_size)
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return Response(body, status_code=status_code, media_type=media_type, headers=headers)
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = cache_control
        if compressible:
            response.headers["Vary"] = "Accept-Encoding"
        return response
