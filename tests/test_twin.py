"""twin(): every page is registered with a JSON twin by the same builder, and renders exactly its twin's data."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from fixtures import HAND_PAGES
from pydantic import BaseModel

from app import render
from app.pages import skipped
from app.twin import twin

PAGE_PATHS = {"/", "/claims", "/layers", "/layers/{layer}", "/layers/{layer}/units/{unit}", "/layers/{layer}/ablation",
              "/layers/{layer}/units/{unit}/classes", "/skipped", "/categories", "/compare", "/units",
              "/layers/{layer}/units/{unit}/classes/{wnid}"}


def _parameters(operation: dict[str, Any]) -> list[tuple[str, str, bool, str]]:
    return sorted((p["name"], p["in"], p.get("required", False), repr(p["schema"])) for p in operation["parameters"])


def test_every_page_has_a_documented_twin_with_the_same_parameters(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()["paths"]
    page_paths = {path for path, ops in spec.items() if "pages" in ops.get("get", {}).get("tags", [])}
    assert page_paths == PAGE_PATHS
    for path in page_paths:
        page, api = spec[path]["get"], spec["/api" + path]["get"]
        assert api["tags"] == ["api"] and page["summary"] == f"{api['summary']} (HTML)", path
        assert _parameters(page) == _parameters(api), path
        assert "text/html" in page["responses"]["200"]["content"]
        # The response model: a schema of its own (or a list of one), and the error shape.
        schema = api["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in schema or "$ref" in schema.get("items", {}), path
        assert "ErrorResponse" in repr(api["responses"]["404"]), path


@pytest.mark.parametrize("url", HAND_PAGES)
def test_a_page_renders_exactly_the_data_of_its_twin(client: TestClient, monkeypatch: pytest.MonkeyPatch,
                                                     url: str) -> None:
    rendered: list[Any] = []
    original = render.page

    def spy(request: Any, spec: render.Page[Any], ctx: Any, params: BaseModel) -> Any:
        rendered.append(ctx)
        return original(request, spec, ctx, params)

    monkeypatch.setattr(render, "page", spy)
    page = client.get(url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    (ctx,) = rendered
    as_json = [c.model_dump(mode="json") for c in ctx] if isinstance(ctx, list) else ctx.model_dump(mode="json")
    assert as_json == client.get("/api" + url).json()


def test_a_builder_without_one_parameter_model_is_refused() -> None:
    def no_params(k: int) -> dict[str, int]:
        return {"k": k}

    with pytest.raises(TypeError, match="exactly one query-parameter model"):
        twin(APIRouter(), "/x", skipped.PAGE, summary="x")(no_params)
