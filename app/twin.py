"""twin(): one context builder registered twice, as the JSON route `/api/X` and the HTML page `/X`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, get_args, get_origin

from fastapi import APIRouter, Request
from fastapi.params import Query as QueryInfo
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from app import render

Build = TypeVar("Build", bound=Callable[..., Any])


def _params_argument(signature: inspect.Signature) -> str:
    """The name of the builder's one query-parameter model (a pydantic model), which the page's links keep."""
    found = []
    for name, parameter in signature.parameters.items():
        kind, meta = parameter.annotation, ()
        if get_origin(kind) is Annotated:
            kind, *meta = get_args(kind)
        # A model declared as Query() (e.g. Annotated[ScoreParams, Query()]); a dependency (Depends) is not one.
        if isinstance(kind, type) and issubclass(kind, BaseModel) and any(isinstance(m, QueryInfo) for m in meta):
            found.append(name)
    if len(found) != 1:
        raise TypeError(f"a twin's builder takes exactly one query-parameter model, not {found}")
    return found[0]


def twin(router: APIRouter, path: str, page: render.Page[Any], *, summary: str) -> Callable[[Build], Build]:
    """Register `build` at `/api{path}` (JSON, its return annotation as response model) and at `path` (HTML).

    `build` is a FastAPI endpoint that returns the page's context; the HTML route calls the same
    function with the same parameters and renders what it returned through `page`, so the page
    shows exactly the data of its JSON twin. `build` may take the request (e.g. for URLs).
    """

    def register(build: Build) -> Build:
        signature = inspect.signature(build, eval_str=True)
        params_name = _params_argument(signature)
        takes_request = "request" in signature.parameters
        router.add_api_route(
            "/api" + path, build, methods=["GET"], response_model=signature.return_annotation,
            tags=["api"], summary=summary, name=build.__name__,
        )

        def html(request: Request, **kwargs: Any) -> HTMLResponse:
            ctx = build(request=request, **kwargs) if takes_request else build(**kwargs)
            return render.page(request, page, ctx, kwargs[params_name])

        # FastAPI reads the parameters off the signature: the builder's own, plus the request.
        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()]
        if not takes_request:
            parameters.insert(0, inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request))
        html.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters, return_annotation=HTMLResponse
        )
        router.add_api_route(
            path, html, methods=["GET"], response_class=HTMLResponse, tags=["pages"],
            summary=f"{summary} (HTML)", description=f"The page of `/api{path}`, rendered as HTML.",
            name=f"{build.__name__}_page",
        )
        return build

    return register
