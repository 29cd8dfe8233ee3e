"""twin(): one context builder registered twice, as the JSON route `/api/X` and the HTML page `/X`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, get_args, get_origin

from fastapi import APIRouter, Request
from fastapi.params import Query as QueryInfo
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, TypeAdapter

from app import heavy, render
from app.data.db import Reader

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


def _reader_argument(signature: inspect.Signature) -> str | None:
    """The name of the builder's DB cursor (a Reader dependency), whose generation keys its cached responses."""
    for name, parameter in signature.parameters.items():
        kind = parameter.annotation
        if get_origin(kind) is Annotated and get_args(kind)[0] is Reader:
            return name
    return None


def _cached(request: Request, reader: Reader | None, kind: str, respond: Callable[[], Response]) -> Response:
    """The response for this URL, rendered once per DB generation: a page is a function of the DB and its URL."""
    if reader is None:
        return respond()
    key = (kind, request.scope.get("root_path", ""), request.url.path, request.url.query)

    def render_once() -> tuple[bytes, dict[str, str]]:
        response = respond()
        return bytes(response.body), {k: v for k, v in response.headers.items() if k != "content-length"}

    body, headers = reader.cache.get(reader.generation, key, render_once, body=True)
    return Response(body, headers=headers)


def _interrupt(reader: Reader | None) -> Callable[[], None] | None:
    return None if reader is None else reader.interrupt


def twin(router: APIRouter, path: str, page: render.Page[Any], *, summary: str) -> Callable[[Build], Build]:
    """Register `build` at `/api{path}` (JSON, its return annotation as response model) and at `path` (HTML).

    `build` is a FastAPI endpoint that returns the page's context; the HTML route calls the same
    function with the same parameters and renders what it returned through `page`, so the page
    shows exactly the data of its JSON twin. `build` may take the request (e.g. for URLs).
    """

    def register(build: Build) -> Build:
        signature = inspect.signature(build, eval_str=True)
        params_name = _params_argument(signature)
        reader_name = _reader_argument(signature)
        takes_request = "request" in signature.parameters
        adapter: TypeAdapter[Any] = TypeAdapter(signature.return_annotation)

        def context(request: Request, kwargs: dict[str, Any]) -> Any:
            return build(request=request, **kwargs) if takes_request else build(**kwargs)

        # Both routes answer from the response cache: the JSON is the context as its response model
        # serialises it, and the page renders the same context. Either is built on a request thread, or in the
        # heavy pool when it computes what publication did not store (app.heavy).
        async def api(request: Request, **kwargs: Any) -> Response:
            reader = kwargs.get(reader_name or "")
            return await heavy.answer(request, lambda: _cached(request, reader, "json", lambda: Response(
                adapter.dump_json(context(request, kwargs)), media_type="application/json")), _interrupt(reader))

        async def html(request: Request, **kwargs: Any) -> Response:
            reader = kwargs.get(reader_name or "")
            return await heavy.answer(request, lambda: _cached(request, reader, "html", lambda: render.page(
                request, page, context(request, kwargs), kwargs[params_name])), _interrupt(reader))

        # FastAPI reads the parameters off the signature: the builder's own, plus the request.
        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()]
        if not takes_request:
            parameters.insert(0, inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request))
        api.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        html.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters, return_annotation=HTMLResponse
        )
        router.add_api_route(
            "/api" + path, api, methods=["GET"], response_model=signature.return_annotation,
            tags=["api"], summary=summary, name=build.__name__, description=build.__doc__,
        )
        router.add_api_route(
            path, html, methods=["GET"], response_class=HTMLResponse, tags=["pages"],
            summary=f"{summary} (HTML)", description=f"The page of `/api{path}`, rendered as HTML.",
            name=f"{build.__name__}_page",
        )
        return build

    return register
