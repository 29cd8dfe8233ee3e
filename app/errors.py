"""One error type, one handler, one JSON shape: {"error": {"status", "title", "detail"}}."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("app")

# Paths answered in JSON even when they fail; everything else is an HTML page.
_JSON_PREFIXES = ("/api", "/images", "/healthz", "/static", "/openapi.json", "/docs")


class ErrorBody(BaseModel):
    """What went wrong, for people and programs."""

    status: int
    title: str
    detail: str


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody


class AppError(Exception):
    """Any failure a request can meet; the handler turns it into the one error shape."""

    def __init__(self, status: int, detail: str, title: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail


def not_found(detail: str) -> AppError:
    """404 for an unknown layer, unit, image, run or category."""
    return AppError(404, detail)


def bad_parameter(detail: str) -> AppError:
    """422 for a parameter that is well-formed but out of bounds."""
    return AppError(422, detail, "Invalid parameter")


# Documented on every route so the error shape is part of the OpenAPI contract.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "Unknown layer, unit, image, run or category"},
    422: {"model": ErrorResponse, "description": "Invalid parameter"},
    503: {"model": ErrorResponse, "description": "Database not available"},
}


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return not any(path == p or path.startswith(p + "/") or path.startswith(p + ".") for p in _JSON_PREFIXES)


def error_response(request: Request, error: AppError) -> Response:
    """Render an AppError as JSON, or as an HTML page with the same status for page routes."""
    body = ErrorResponse(error=ErrorBody(status=error.status, title=error.title, detail=error.detail))
    headers = {"Cache-Control": "no-store"}
    if _wants_html(request) and request.method in ("GET", "HEAD"):
        render = getattr(request.app.state, "render_error", None)
        if render is not None:
            try:
                html = render(request, body.error)
            except Exception:  # a broken template must not turn a 404 into a 500
                log.exception("cannot render the error page")
            else:
                return HTMLResponse(html, status_code=error.status, headers=headers)
    return JSONResponse(body.model_dump(), status_code=error.status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure, ours or the framework's, through error_response."""

    async def on_app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AppError)
        return error_response(request, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(request, bad_parameter(_describe_validation(exc)))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no page at {request.url.path}"
        response = error_response(request, AppError(exc.status_code, detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Never expected; logged in full, answered in the common shape without internals.
        log.exception("unhandled error on %s", request.url.path)
        return error_response(request, AppError(500, "internal error; see the server log"))

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
