"""twin(): every page is registered with a JSON twin by the same builder, and renders exactly its twin's data."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from fixtures import HAND_PAGES, LAYERS, Page, make_settings
from pydantic import BaseModel

from app import render
from app.main import create_app
from app.pages import skipped
from app.twin import twin
from unitscope import schema

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


def test_the_search_twins_pager_links_stay_in_their_own_kind(hand: dict[str, Path]) -> None:
    """/api/units' prev_url and next_url lead to JSON (/api/units?…); the page's pager leads to pages (/units?…)."""
    with duckdb.connect(str(hand["db"])) as con:
        for layer, units in LAYERS.items():
            for unit in units:
                con.execute(f"INSERT INTO {schema.UNIT_LABELS} VALUES (1, ?, ?, 'Chihuahua')", [layer, unit])
                con.execute(f"INSERT INTO {schema.UNIT_LABEL_TERMS} VALUES (1, ?, ?, 'excites', 1, 'n02085620', "
                            "'Chihuahua', 'class', 3, 0.9, 0.01)", [layer, unit])
    total = sum(len(units) for units in LAYERS.values())
    with TestClient(create_app(make_settings(hand["db"], hand["root"]))) as client:
        first = client.get("/api/units?q=chihua&sort=q&limit=2").json()
        assert (first["total"], first["prev_url"]) == (total, None)
        next_url = urlsplit(first["next_url"])
        assert next_url.path == "/api/units"
        assert parse_qs(next_url.query) == {"q": ["chihua"], "sort": ["q"], "limit": ["2"], "offset": ["2"]}
        middle = client.get(first["next_url"])  # a JSON client follows its links and stays in JSON
        assert middle.headers["content-type"] == "application/json"
        second = middle.json()
        assert second["offset"] == 2 and len(second["units"]) == 2
        assert second["prev_url"] == "/api/units?q=chihua&sort=q&limit=2"
        assert urlsplit(second["next_url"]).path == "/api/units"
        # The page of the same URL: the same parameters, its links to the pages.
        page = Page(client.get("/units?q=chihua&sort=q&limit=2&offset=2").text)
        pager = {a["rel"]: a["href"] for a in page.links if a.get("rel") in ("prev", "next")}
        assert pager == {"prev": "/units?q=chihua&sort=q&limit=2", "next": second["next_url"].removeprefix("/api")}
