"""`/units`: find units by what excites or inhibits them, across layers and runs (their stored labels)."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from app.pages.labels import LabelTerm, label_model
from app.params import SearchParams
from app.render import Page
from app.urls import Urls
from unitscope.data.labels import has_labels, search
from unitscope.data.runs import find_run, runs
from unitscope.data.source import Source

# The header's box: `mixed4c 447`, `mixed4c/447` or `mixed4c:447` name a unit.
UNIT_TEXT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*[ /:#]\s*(\d+)\s*$")


class UnitHit(BaseModel):
    """A unit whose label matches, with what the search sorted by."""

    run_id: int
    layer: str
    unit: int
    label: str
    excites: list[LabelTerm]
    inhibits: list[LabelTerm]
    si: float | None = Field(description="SI for the study's category (dog) on max, as the layer page shows it")
    d_prime: float | None = Field(description="d′ for that category on max")
    auroc: float | None = Field(description="the AUROC of the unit's best term that matches the text (of its best "
                                "term when no text is given)")
    q: float | None = Field(description="that term's q")
    url: str


class UnitsContext(BaseModel):
    """`/units`: one page of the matching units, best first."""

    q: str | None
    run: int | None
    layer: str | None
    side: str | None
    max_q: float
    total: int = Field(description="units that match, over every page")
    offset: int
    limit: int
    sort: str
    labelled: bool = Field(description="false for a DB without labels (python -m worker derive adds them)")
    units: list[UnitHit]
    prev_url: str | None = Field(description="the page before as JSON (/api/units?…); null on the first")
    next_url: str | None = Field(description="the page after as JSON (/api/units?…); null on the last")


def build(source: Source, p: SearchParams, urls: Urls) -> UnitsContext:
    """`/units?q=…`: the units with a class, synset or label that contains q."""
    total, hits = source.cached(("search", p.q, p.run, p.layer, p.side, p.max_q, p.sort, p.limit, p.offset),
                                lambda: search(source, p.q, run_id=p.run, layer=p.layer, side=p.side, max_q=p.max_q,
                                               sort=p.sort, limit=p.limit, offset=p.offset))
    units = []
    for hit in hits:
        label = label_model(hit.label)
        assert label is not None
        units.append(UnitHit(run_id=hit.run_id, layer=hit.layer, unit=hit.unit, label=label.label,
                             excites=label.excites, inhibits=label.inhibits, si=hit.si, d_prime=hit.d_prime,
                             auroc=hit.auroc, q=hit.q, url=urls.with_params(run=hit.run_id).unit(hit.layer, hit.unit)))
    return UnitsContext(
        q=p.q, run=p.run, layer=p.layer, side=p.side, max_q=p.max_q, total=total, offset=p.offset, limit=p.limit,
        sort=p.sort, labelled=has_labels(source), units=units,
        **{name: None if url is None else urls.api(url) for name, url in _pager(p, total, urls).items()})


def _query(view: SearchParams | UnitsContext) -> dict[str, object]:
    """A search's parameters other than q and offset, those at their defaults left out (short shared URLs)."""
    defaults = SearchParams()
    return {"run": view.run, "layer": view.layer, "side": view.side,
            **{name: None if getattr(view, name) == getattr(defaults, name) else getattr(view, name)
               for name in ("max_q", "sort", "limit")}}


def _pager(view: SearchParams | UnitsContext, total: int, urls: Urls) -> dict[str, str | None]:
    """The `/units` pages before and after this one, as prev_url and next_url (None at either end).

    The JSON gives them under /api (UnitsContext), the page as they are (its extras): one builder for both."""
    query = _query(view)
    previous = _previous(view.offset, view.limit, total) or None
    return {"prev_url": urls.search(view.q, **query, offset=previous) if view.offset else None,
            "next_url": urls.search(view.q, **query, offset=view.offset + view.limit)
            if view.offset + view.limit < total else None}


def _previous(offset: int, limit: int, total: int) -> int:
    """The offset of the page before `offset`: the last page that has hits when `offset` is past them all."""
    last = (total - 1) // limit * limit if total else 0
    return max(0, min(offset - limit, last))


def _url(ctx: UnitsContext, urls: Urls) -> str:
    return urls.search(ctx.q, **_query(ctx), offset=ctx.offset or None)


def jump_target(source: Source, text: str, urls: Urls, run_id: int | None = None) -> str:
    """Where the header's box goes: the unit page for `layer unit`, else the label search.

    The layer is looked for, in any case, in the page's run (`run_id`) first, then in the latest run that has it, so
    `mixed4c 447` finds mixed4c even when the latest run is of another network. A unit past the layer's end still
    opens the unit page, whose 404 gives the layer's units; NotFound for an unknown run.
    """
    match = UNIT_TEXT.match(text)
    asked = find_run(source, run_id)  # NotFound for a run the DB does not have
    if match:
        typed, unit = match[1].casefold(), int(match[2])
        found = ((r, name) for r in ([asked] if asked else []) + runs(source) for name in r.layers
                 if name.casefold() == typed)
        run, layer = next(found, (None, ""))
        if run is not None:
            latest = runs(source)[0]
            # The run stays in the link when the page named it, or when it is not the latest (which a link
            # without one shows).
            keep = run_id is not None or run.run_id != latest.run_id
            return urls.with_params(run=run.run_id if keep else None).unit(layer, unit)
    return urls.search(text.strip() or None)


PAGE: Page[UnitsContext] = Page("search.html", _url, lambda ctx, urls: _pager(ctx, ctx.total, urls))
