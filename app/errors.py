"""Every failure, as one JSON shape {"error": {"status", "title", "detail"}} or an HTML page with the same status.

The data layer raises the domain errors of unitscope/errors.py; this module alone knows their HTTP status.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.heavy import Busy
from unitscope.errors import NotFound, Problem, Unavailable

log = logging.getLogger("app")

# Paths answered in JSON even when they fail; everything else is an HTML page.
_JSON_PREFIXES = ("/api", "/images", "/healthz", "/static", "/openapi.json", "/docs")
# The HTTP status of each domain error (the first class the error is an instance of).
PROBLEM_STATUS: dict[type[Problem], int] = {NotFound: 404, Unavailable: 503}
_INVALID = "Invalid parameter"


class ErrorBody(BaseModel):
    """What went wrong, for people and programs."""

    status: int
    title: str
    detail: str


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody


# Documented on every route so the error shape is part of the OpenAPI contract.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "Unknown layer, unit, image, run or category"},
    422: {"model": ErrorResponse, "description": _INVALID},
    503: {"model": ErrorResponse, "description": "Database not available, or the server busy (with Retry-After)"},
}


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return not any(path == p or path.startswith(p + "/") or path.startswith(p + ".") for p in _JSON_PREFIXES)


def error_response(request: Request, status: int, detail: str, title: str | None = None) -> Response:
    """The error as JSON, or as an HTML page with the same status for page routes."""
    body = ErrorResponse(error=ErrorBody(status=status, title=title or HTTPStatus(status).phrase, detail=detail))
    headers = {"Cache-Control": "no-store"}
    if _wants_html(request) and request.method in ("GET", "HEAD"):
        render = getattr(request.app.state, "render_error", None)
        if render is not None:
            try:
                html = render(request, body.error)
            except Exception:  # a broken template must not turn a 404 into a 500
                log.exception("cannot render the error page")
            else:
                return HTMLResponse(html, status_code=status, headers=headers)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure, ours or the framework's, through error_response."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        status = next(code for kind, code in PROBLEM_STATUS.items() if isinstance(exc, kind))
        response = error_response(request, status, str(exc))
        if isinstance(exc, Busy):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(request, 422, _describe_validation(exc), _INVALID)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no page at {request.url.path}"
        response = error_response(request, exc.status_code, detail)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Never expected; logged in full, answered in the common shape without internals.
        log.exception("unhandled error on %s", request.url.path)
        return error_response(request, 500, "internal error; see the server log")

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
