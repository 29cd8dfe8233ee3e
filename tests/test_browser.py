"""The dashboard in headless Debian chromium (never a downloaded browser) over a real-worker DB.

Screenshots land in test-output/screenshots/ for a person to look at.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures import REPO, make_settings, serve

from app.main import create_app

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = REPO / "test-output" / "screenshots"
LAYER = "mixed4c"
K = 20  # a real DB of a few hundred images: k = 1000 would put every unit at the same point


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's chromium under Playwright; skipped where it is missing, except in CI."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing (CI=true): install Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def base_url(real_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server (uvicorn) on 127.0.0.1 over the real-worker DB."""
    with serve(create_app(make_settings(real_db, tmp_path_factory.mktemp("browser")))) as url:
        yield url


@pytest.fixture
def page(browser: object, base_url: str) -> Iterator[object]:
    """A fresh page that may only talk to the test server, failing on any script error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=base_url)  # type: ignore[attr-defined]
    # Nothing may leave loopback: any other request is aborted (and would break the page visibly).
    context.route(re.compile(r"^(?!http://127\.0\.0\.1:)"), lambda route: route.abort())
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, errors


def shot(page: object, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def images_loaded(page: object) -> None:
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.images.length > 0 && Array.from(document.images).every(i => i.complete)")
    widths = page.evaluate("() => Array.from(document.images).map(i => i.naturalWidth)")  # type: ignore[attr-defined]
    assert widths and all(w > 0 for w in widths), widths


def test_scatter_has_one_point_per_unit_and_a_click_opens_the_unit(page: object, base_url: str) -> None:
    page.goto(f"/layers/{LAYER}?k={K}")  # type: ignore[attr-defined]
    page.wait_for_function("() => document.querySelector('#scatter .scatterlayer .point') !== null")  # type: ignore[attr-defined]
    traces = page.evaluate(  # type: ignore[attr-defined]
        "() => document.getElementById('scatter').data.filter(t => t.type === 'scatter')"  # not the marginals
        ".map(t => ({x: t.x, y: t.y, units: t.customdata.map(c => c[0])}))")
    assert sum(len(t["x"]) for t in traces) == 512
    assert sorted(u for t in traces for u in t["units"]) == list(range(512))
    drawn = page.locator("#scatter .scatterlayer .point")  # type: ignore[attr-defined]
    assert drawn.count() == 512
    # The table's later rows, held back while the charts drew, are all in it once they are drawn.
    page.wait_for_function("() => !document.querySelector('template.later-rows')")  # type: ignore[attr-defined]
    units = page.evaluate(  # type: ignore[attr-defined]
        "() => Array.from(document.querySelectorAll('#units-table tbody tr td:first-child')).map(td => +td.dataset.value)")
    assert sorted(units) == list(range(512))
    shot(page, "layer-mixed4c")

    # Click the point drawn last (on top of any overlap): the red trace's last point, if any.
    t = max(i for i, tr in enumerate(traces) if tr["x"])
    i = len(traces[t]["x"]) - 1
    x, y = traces[t]["x"][i], traces[t]["y"][i]
    point = page.locator("#scatter .scatterlayer .trace").nth(t).locator(".point").nth(i)  # type: ignore[attr-defined]
    point.scroll_into_view_if_needed()  # the mouse hovers only what the viewport shows
    box = point.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)  # type: ignore[attr-defined]
    page.wait_for_selector("#scatter .hoverlayer .hovertext")  # type: ignore[attr-defined]
    page.mouse.click(cx, cy)  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(rf"/layers/{LAYER}/units/\d+\?k={K}$"))  # type: ignore[attr-defined]
    unit = int(re.search(r"/units/(\d+)", page.url).group(1))  # type: ignore[attr-defined]
    assert unit in {u for tr in traces for u, px, py in zip(tr["units"], tr["x"], tr["y"]) if (px, py) == (x, y)}
    body = httpx.get(f"{base_url}/api/layers/{LAYER}/units/{unit}?k={K}").json()
    assert (body["in_top"], body["in_bottom"]) == (x, y)
    images_loaded(page)
    assert page.locator(".ranking .card img").count() == 3 * 8  # type: ignore[attr-defined]
    page.wait_for_function("() => document.querySelector('#histogram .barlayer') !== null")  # type: ignore[attr-defined]
    shot(page, "unit-page")


@pytest.mark.parametrize(("url", "name"), [
    ("/", "index"),
    ("/layers", "layers"),
    (f"/layers?k={K}", "layers-k20"),
    (f"/layers/{LAYER}", "layer-mixed4c-default"),
    (f"/layers/{LAYER}/units/0?k={K}", "unit-0"),
    ("/skipped", "skipped"),
    ("/claims", "claims"),
    ("/units", "units"),
    ("/compare", "compare"),
    ("/categories", "categories"),
])
def test_pages_render_and_are_screenshotted(page: object, url: str, name: str) -> None:
    response = page.goto(url)  # type: ignore[attr-defined]
    assert response is not None and response.status == 200
    if page.locator("[data-figure]").count():  # type: ignore[attr-defined]
        page.wait_for_function(  # type: ignore[attr-defined]
            "() => Array.from(document.querySelectorAll('[data-figure]')).every(d => d.querySelector('.main-svg'))")
    if "/units/" in url:
        images_loaded(page)
    json_link = page.locator("a.json-link").get_attribute("href")  # type: ignore[attr-defined]
    assert json_link.startswith("/api")
    # No table cell cuts its text off (a cut-off number reads as a real one): a wide table scrolls in its box.
    clipped = page.evaluate(  # type: ignore[attr-defined]
        "() => Array.from(document.querySelectorAll('table td, table th'))"
        ".filter(c => c.scrollWidth > c.clientWidth + 1 || c.scrollHeight > c.clientHeight + 1)"
        ".map(c => c.textContent.trim().slice(0, 60))")
    assert clipped == []
    assert shot(page, name).stat().st_size > 10_000


def test_table_sorts_by_si(page: object) -> None:
    page.goto(f"/layers/{LAYER}?k={K}")  # type: ignore[attr-defined]
    page.wait_for_function("() => !document.querySelector('template.later-rows')")  # type: ignore[attr-defined]
    script = ("() => Array.from(document.querySelectorAll('#units-table tbody tr td:nth-child(2)'))"
              ".map(td => parseFloat(td.dataset.value))")
    opened = page.evaluate(script)  # type: ignore[attr-defined]
    assert len(opened) == 512 and opened == sorted(opened, reverse=True)  # it opens by SI, the selective first
    header = page.locator("#units-table th", has_text="SI")  # type: ignore[attr-defined]
    header.click()
    header.click()  # descending
    values = page.evaluate(  # type: ignore[attr-defined]
        "() => Array.from(document.querySelectorAll('#units-table tbody tr td:nth-child(2)')).map(td => parseFloat(td.dataset.value))")
    assert len(values) == 512 and values == sorted(values, reverse=True)


def test_table_sorts_by_auroc(page: object) -> None:
    page.goto(f"/layers/{LAYER}?k={K}")  # type: ignore[attr-defined]
    header = page.locator("#units-table th", has_text="AUROC")  # type: ignore[attr-defined]
    column = page.evaluate(  # type: ignore[attr-defined]
        "() => Array.from(document.querySelectorAll('#units-table th')).findIndex(th => th.textContent.includes('AUROC')) + 1")
    header.click()
    values = page.evaluate(  # type: ignore[attr-defined]
        f"() => Array.from(document.querySelectorAll('#units-table tbody tr td:nth-child({column})')).map(td => parseFloat(td.dataset.value))")
    assert len(values) == 512 and values == sorted(values)


def test_the_first_chart_page_gets_plotly_compressed_once(page: object) -> None:
    """A fresh browser: Plotly crosses the wire gzipped, once, before the charts need it; the time to the first
    chart is printed (not asserted: timings are for bench/first_page.py, which docs/performance.md quotes)."""
    page.goto(f"/layers/{LAYER}?k={K}", wait_until="commit")  # type: ignore[attr-defined]
    first = page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('[data-figure] .main-svg') ? performance.now() : false", polling="raf")
    page.wait_for_load_state("load")  # type: ignore[attr-defined]
    plotly = page.evaluate(  # type: ignore[attr-defined]
        "() => performance.getEntriesByType('resource').filter(r => r.name.includes('plotly'))"
        ".map(r => [r.encodedBodySize, r.decodedBodySize])")
    assert len(plotly) == 1
    encoded, decoded = plotly[0]
    assert decoded > 1_000_000 and encoded < decoded / 2.5
    print(f"first chart page: first chart drawn by {first.json_value():.0f} ms; "
          f"plotly {encoded / 1e6:.2f} MB on the wire for {decoded / 1e6:.2f} MB")


def test_the_jump_box_searches_labels_and_opens_units(page: object, real_db: Path) -> None:
    import duckdb

    with duckdb.connect(str(real_db), read_only=True) as con:
        name = con.execute("SELECT name FROM unit_label_terms GROUP BY name ORDER BY count(*) DESC, name "
                           "LIMIT 1").fetchone()[0]
    page.goto("/")  # type: ignore[attr-defined]
    page.fill("form.jump input[name=q]", name)  # type: ignore[attr-defined]
    page.press("form.jump input[name=q]", "Enter")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r"/units\?q="))  # type: ignore[attr-defined]
    rows = page.locator("table.data tbody tr")  # type: ignore[attr-defined]
    assert rows.count() > 0
    assert all(name.lower() in rows.nth(i).inner_text().lower() for i in range(min(5, rows.count())))
    shot(page, "units-search")
    rows.nth(0).locator("a").first.click()
    page.wait_for_url(re.compile(r"/layers/\w+/units/\d+\?run=\d+$"))  # type: ignore[attr-defined]
    run = page.url.rsplit("run=", 1)[1]  # type: ignore[attr-defined]  # a search's links name their unit's run
    label = page.locator(".unit-label")  # type: ignore[attr-defined]
    assert label.count() == 1 and name.lower() in label.inner_text().lower()
    shot(page, "unit-label")
    page.fill("form.jump input[name=q]", f"{LAYER} 7")  # type: ignore[attr-defined]
    page.press("form.jump input[name=q]", "Enter")  # type: ignore[attr-defined]
    # The header's form carries the page's run: the jump stays in it.
    page.wait_for_url(re.compile(rf"/layers/{LAYER}/units/7\?run={run}$"))  # type: ignore[attr-defined]
