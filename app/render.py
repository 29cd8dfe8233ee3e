"""Turn a page's context into HTML (Jinja2); its JSON twin is the same context, as the route's response model. And
the downloads (CSV, Parquet): a file named for what it holds."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from app.errors import ErrorBody
from app.figures import percent
from app.params import K_MAX, N_MAX
from app.urls import Urls
from unitscope import claim_rules, schema


def make_environment(templates_dir: Path) -> jinja2.Environment:
    """The Jinja2 environment: autoescaped, strict about undefined names."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = number
    env.filters["pct"] = percent
    env.filters["signed_pct"] = signed_percent
    env.filters["q_value"] = q_value
    env.globals.update(K_MAX=K_MAX, N_MAX=N_MAX, STATS=schema.STATS, FEW_IMAGES=claim_rules.FEW_IMAGES)
    return env


def q_value(q: float, bare: bool = False) -> str:
    """A q-value in one significant digit, 'q 3e-05'; one that underflowed to 0 as '< 1e-300' (it is not 0)."""
    text = f"{q:.1g}" if q > 0 else "< 1e-300"
    return text if bare else f"q {text}"


def number(value: float | None, digits: int = 3) -> str:
    """A number for a table cell: fixed digits for floats, 'n/a' for None."""
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def signed_percent(share: float | None) -> str:
    """A change of a share in percentage points with its sign, for tables; 'n/a' for None."""
    return "n/a" if share is None else f"{100 * share:+.1f} pts"


def urls_for(request: Request, params: BaseModel | None = None) -> Urls:
    """URL helpers for this request, carrying the view's parameters into its links."""
    return Urls(request.scope.get("root_path", ""), params.model_dump() if params is not None else None)


C = TypeVar("C")


def _nothing(ctx: object, urls: Urls) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class Page(Generic[C]):
    """How one kind of context is shown as HTML: its template, its own URL, and what it adds for display."""

    template: str
    url: Callable[[C, Urls], str]  # the page's canonical URL, from the one URL builder
    # Presentation only, computed from the context (figures, preformatted table rows): never new data.
    extras: Callable[[C, Urls], Mapping[str, Any]] = _nothing


def page(request: Request, spec: Page[C], ctx: C, params: BaseModel) -> HTMLResponse:
    """Render a context as its page; the JSON twin is announced by a Link header and a visible link."""
    env: jinja2.Environment = request.app.state.templates
    urls = urls_for(request, params)
    self_url = spec.url(ctx, urls)
    api_url = urls.api(self_url)
    html = env.get_template(spec.template).render(
        ctx=ctx, params=params, urls=urls, self_url=self_url, api_url=api_url, **spec.extras(ctx, urls)
    )
    headers = {"Link": f'<{api_url}>; rel="alternate"; type="application/json"'}
    return HTMLResponse(html, headers=headers)


def error_page(request: Request, error: ErrorBody) -> str:
    """The HTML body of an error, with the same status as its JSON form."""
    env: jinja2.Environment = request.app.state.templates
    urls = urls_for(request)
    return env.get_template("error.html").render(error=error, urls=urls, self_url=str(request.url.path),
                                                 api_url=None)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV with every digit of a float kept (repr), an empty cell for a missing value, 0/1 for a flag, text as it is."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else int(v) if isinstance(v, bool) else v if isinstance(v, str) else repr(v)
                      for v in row] for row in rows)
    return out.getvalue()


def download(body: str | bytes, media_type: str, filename: str) -> Response:
    """A file the browser saves under `filename`."""
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
