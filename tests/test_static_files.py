"""`/static`: gzip for the clients that take it, a year's caching under a versioned URL, Plotly once per page."""

from __future__ import annotations

import gzip
import re

import pytest
from fastapi.testclient import TestClient

from app.static_files import IMMUTABLE, REVALIDATE, STATIC


def _static_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


@pytest.mark.parametrize("url", ["/layers/mixed4c", "/layers/mixed4c/units/0", "/layers", "/claims"])
def test_pages_load_each_asset_once_under_its_version(client: TestClient, url: str) -> None:
    urls = _static_urls(client.get(url).text)
    assert urls and len(urls) == len(set(urls))
    assert all(re.fullmatch(r"/static/[\w./-]+\?v=[0-9a-f]{12}", u) for u in urls), urls
    if url != "/claims":  # the claims page draws no chart
        assert sum("plotly" in u for u in urls) == 1


def test_plotly_is_sent_compressed_and_cached_for_good(client: TestClient) -> None:
    url = next(u for u in _static_urls(client.get("/layers/mixed4c").text) if "plotly" in u)
    with client.stream("GET", url, headers={"accept-encoding": "gzip"}) as r:
        raw = b"".join(r.iter_raw())
        headers = r.headers
    original = (STATIC / "plotly.min.js").read_bytes()
    assert headers["content-encoding"] == "gzip" and gzip.decompress(raw) == original
    assert len(raw) < len(original) / 3  # 4.8 MB of JavaScript
    assert headers["cache-control"] == IMMUTABLE and headers["vary"] == "Accept-Encoding"
    # The same version again: not modified, no body.
    again = client.get(url, headers={"accept-encoding": "gzip", "if-none-match": headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    # A client without gzip gets the file itself.
    plain = client.get(url, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == original


def test_an_unversioned_or_stale_url_is_revalidated(client: TestClient) -> None:
    for url in ("/static/app.js", "/static/app.js?v=000000000000"):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["cache-control"] == REVALIDATE, url
        assert r.content == (STATIC / "app.js").read_bytes()
    small = client.get("/static/swagger-ui/favicon-32x32.png")
    assert small.status_code == 200 and "content-encoding" not in small.headers  # an image is not gzipped
