"""One error shape for every failure: {"error": {"status", "title", "detail"}}, pinned here."""

from __future__ import annotations

import subprocess
import sys
from http import HTTPStatus

import pytest
from fastapi.testclient import TestClient
from fixtures import REPO, Page

from app.errors import PROBLEM_STATUS
from app.pages import skipped as skipped_page
from app.params import K_MAX, N_MAX, THUMB_MAX
from unitscope.data import images, runs
from unitscope.errors import NotFound, Problem, Unavailable

NOT_FOUND = [
    ("/api/layers/nope", "unknown layer 'nope'"),
    ("/api/layers/nope.csv", "unknown layer 'nope'"),
    ("/api/layers/mixed4c/units/3", "unit 3 is not in mixed4c"),
    ("/api/layers/nope/units/0", "unknown layer 'nope'"),
    ("/api/layers/mixed4c?category=cat", "unknown category 'cat'"),
    ("/api/layers?category=cat", "unknown category 'cat'"),
    ("/api/layers/mixed4c/units/0?category=cat", "unknown category 'cat'"),
    ("/api/?run=9", "no complete run 9"),
    ("/api/skipped?run=2", "no complete run 2"),  # run 2 is still running
    ("/images/99", "no image 99"),
    ("/images/0?run=9", "no complete run 9"),
    # The label search's filters name a run and a layer: one that does not exist is unknown, not an empty search.
    ("/api/units?run=99", "no complete run 99"),
    ("/api/units?run=2&q=dog", "no complete run 2"),
    ("/api/units?layer=nope", "unknown layer 'nope'; the runs have conv1, mixed4c"),
    ("/api/units?run=1&layer=nope", "unknown layer 'nope'; run 1 has conv1, mixed4c"),
    ("/api/nothing", "no page at /api/nothing"),
]

INVALID = [
    "/api/layers/mixed4c?k=0",
    "/api/layers/mixed4c?k=-5",
    f"/api/layers/mixed4c?k={K_MAX + 1}",
    "/api/layers/mixed4c?k=99999999999999999999999",
    "/api/layers/mixed4c?k=1.5",
    "/api/layers/mixed4c?pos_stat=median",
    "/api/layers/mixed4c?neg_stat=MAX",
    "/api/layers/mixed4c?si_stat=",
    "/api/layers/mixed4c?threshold=1.5",
    "/api/layers/mixed4c?threshold=nan",
    "/api/layers?k=0",
    "/api/layers/mixed4c/units/0?n=0",
    f"/api/layers/mixed4c/units/0?n={N_MAX + 1}",
    "/api/layers/mixed4c/units/0?near_stat=abs",
    "/api/layers/mixed4c/units/-1",
    "/api/layers/mixed4c/units/abc",
    "/api/layers/mixed4c/units/1.5",
    "/api/layers/mixed4c/units/99999999999999999999",
    "/api/?run=-1",
    "/api/?run=abc",
    "/images/-1",
    "/images/abc",
    "/images/0?size=3",
    f"/images/0?size={THUMB_MAX + 1}",
    "/images/0?size=big",
    "/api/units?side=up",
    "/api/units?limit=-1",
]


def assert_error_shape(body: object, status: int) -> dict:
    assert isinstance(body, dict) and set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"status", "title", "detail"}
    assert error["status"] == status
    assert isinstance(error["title"], str) and error["title"]
    assert isinstance(error["detail"], str) and error["detail"]
    return error


@pytest.mark.parametrize(("url", "detail"), NOT_FOUND)
def test_unknown_names_and_ids_are_404(client: TestClient, url: str, detail: str) -> None:
    r = client.get(url)
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    error = assert_error_shape(r.json(), 404)
    assert error["title"] == "Not Found"
    assert detail in error["detail"]


@pytest.mark.parametrize("url", INVALID)
def test_bad_parameters_are_422(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 422, r.text
    error = assert_error_shape(r.json(), 422)
    assert error["title"] == "Invalid parameter"


def test_validation_detail_names_the_parameter(client: TestClient) -> None:
    error = client.get("/api/layers/mixed4c?k=0&pos_stat=median").json()["error"]
    assert "k:" in error["detail"] and "pos_stat:" in error["detail"]
    # NaN fails every bound: the detail says what is wrong with it, not "should be less than or equal to 1"
    error = client.get("/api/layers/mixed4c?threshold=nan").json()["error"]
    assert "threshold: Input should be a finite number" in error["detail"], error


def test_error_shape_is_exactly_this(client: TestClient) -> None:
    # Pinned: outside clients parse this.
    assert client.get("/api/layers/nope").json() == {
        "error": {"status": 404, "title": "Not Found",
                  "detail": "unknown layer 'nope'; run 1 has conv1, mixed4c"}
    }
    assert client.get("/api/layers/mixed4c?k=0").json() == {
        "error": {"status": 422, "title": "Invalid parameter",
                  "detail": "k: Input should be greater than or equal to 1"}
    }


def test_wrong_method_is_405_in_the_same_shape(client: TestClient) -> None:
    r = client.post("/api/layers")
    assert r.status_code == 405
    assert_error_shape(r.json(), 405)


@pytest.mark.parametrize(("url", "status"), [
    ("/layers/nope", 404),
    ("/layers/mixed4c/units/7", 404),
    ("/layers/mixed4c?k=0", 422),
    ("/layers/mixed4c/units/x", 422),
    ("/?run=5", 404),
    ("/no/such/page", 404),
])
def test_html_pages_render_errors_as_html_with_the_same_status(client: TestClient, url: str, status: int) -> None:
    r = client.get(url)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("text/html")
    api_url = "/api" + url if not url.startswith("/no/") else "/api/no/such/page"
    api = client.get(api_url)
    assert api.status_code == status
    error, page = api.json()["error"], Page(r.text)
    assert page.title == f"{status} {error['title']} · unitscope"
    box = page.one("div", cls="error-box")
    assert box.one("h1").text == f"{status} · {error['title']}"
    assert box.find_all("p")[0].text == error["detail"].replace(api_url, url)  # the twin's detail, of its own URL


@pytest.mark.parametrize(("problem", "status"), [
    (NotFound("nothing by that name in this run"), 404),
    (Unavailable("the database is being replaced"), 503),
])
def test_domain_errors_from_the_queries_become_the_error_shape_and_page(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, problem: Problem, status: int
) -> None:
    def fail(*args: object) -> None:
        raise problem

    monkeypatch.setattr(skipped_page, "skipped", fail)
    api = client.get("/api/skipped")
    assert api.status_code == status and api.headers["content-type"] == "application/json"
    assert api.json() == {"error": {"status": status, "title": HTTPStatus(status).phrase, "detail": str(problem)}}
    page = client.get("/skipped")
    assert page.status_code == status and page.headers["content-type"].startswith("text/html")
    box = Page(page.text).one("div", cls="error-box")
    assert box.one("h1").text == f"{status} · {HTTPStatus(status).phrase}"
    assert box.find_all("p")[0].text == str(problem)


def test_every_domain_error_has_a_status() -> None:
    assert set(Problem.__subclasses__()) == set(PROBLEM_STATUS)


def test_the_data_layer_raises_domain_errors_and_imports_nothing_http(client: TestClient) -> None:
    with client.app.state.db.reader() as reader:  # type: ignore[attr-defined]
        run = runs.require_run(reader, None)
        with pytest.raises(NotFound, match="unknown layer 'nope'"):
            runs.require_layer(run, "nope")
        with pytest.raises(NotFound, match="no complete run 9"):
            runs.find_run(reader, 9)
        with pytest.raises(NotFound, match="no image 99"):
            images.image_path(reader, run.run_id, 99)
    code = ("import sys, unitscope.data.runs, app.data.db, app.data.layer_tests, app.data.units, app.data.low_level, app.image_files; "
            "http = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')); "
            "assert not http, http")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
