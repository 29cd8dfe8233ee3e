"""`/docs`: the OpenAPI explorer, with swagger-ui served from static/swagger-ui so it works offline; and
`/favicon.ico`, which browsers ask for on their own."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse

from app.render import urls_for

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    """Swagger UI over /openapi.json; every asset is local."""
    urls = urls_for(request)
    return get_swagger_ui_html(
        openapi_url=urls.openapi(),
        title=f"{request.app.title} API",
        swagger_js_url=urls.static("swagger-ui/swagger-ui-bundle.js"),
        swagger_css_url=urls.static("swagger-ui/swagger-ui.css"),
        swagger_favicon_url=urls.static("swagger-ui/favicon-32x32.png"),
        # No badge from the public validator: it would send the schema's URL off this machine.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/favicon.ico")
def favicon(request: Request) -> RedirectResponse:
    """The site icon, at its versioned (long-cached) static URL."""
    return RedirectResponse(urls_for(request).static("favicon.svg"), status_code=301)
