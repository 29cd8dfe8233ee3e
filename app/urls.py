"""Every URL the server emits is built here, never joined by hand in templates."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlencode

from app import static_files
from app.params import DEFAULTS
from unitscope.schema import DEFAULT_SI_STAT as DEFAULT_CLASS_STAT

# Which of the current view's parameters a link to each kind of page keeps.
_RUN = ("run",)
_SCORES = (*_RUN, "category", "k", "pos_stat", "neg_stat", "si_stat", "threshold")
_UNIT = (*_SCORES, "n", "near_stat", "order")
_COMPARE = _SCORES[1:]  # a compare view names its two runs as a and b


def _seg(value: object) -> str:
    return quote(str(value), safe="")


class Urls:
    """URL helpers bound to one request: its root path and the parameters links should keep."""

    def __init__(self, root_path: str = "", params: Mapping[str, object] | None = None) -> None:
        self.root = root_path.rstrip("/")
        # Only parameters that differ from the defaults, so shared links stay short.
        self.params = {k: v for k, v in (params or {}).items() if v is not None and DEFAULTS.get(k) != v}

    def _build(self, path: str, keep: tuple[str, ...], extra: Mapping[str, object] | None = None) -> str:
        query = {k: self.params[k] for k in keep if k in self.params}  # always in the order of `keep`
        query.update({k: v for k, v in (extra or {}).items() if v is not None})
        url = self.root + path
        return f"{url}?{urlencode(query)}" if query else url

    def with_params(self, **changes: object) -> Urls:
        """The same helpers with some parameters changed (e.g. links into another run or category)."""
        return Urls(self.root, {**self.params, **changes})

    def index(self) -> str:
        """`/` for the current run."""
        return self._build("/", _RUN)

    def search(self, text: str | None = None, **query: object) -> str:
        """`/units`: the units whose labels match `text` (all labelled units without), in the current run."""
        return self._build("/units", _RUN, {"q": text or None, **query})

    def jump(self) -> str:
        """`/jump`: the header's box (a unit such as `mixed4c 447`, else a label search)."""
        return self.root + "/jump"

    def layers(self) -> str:
        """`/layers` with the current score parameters."""
        return self._build("/layers", _SCORES)

    def layer(self, layer: str) -> str:
        """The scatter page of a layer."""
        return self._build(f"/layers/{_seg(layer)}", _SCORES)

    def unit(self, layer: str, unit: int) -> str:
        """A unit page, keeping the current parameters."""
        return self._build(f"/layers/{_seg(layer)}/units/{int(unit)}", _UNIT)

    def unit_responses(self, layer: str, unit: int, fmt: str) -> str:
        """A unit's every response as a file: fmt 'csv' or 'parquet'."""
        return self._build(f"/api/layers/{_seg(layer)}/units/{int(unit)}/responses.{fmt}", _RUN)

    def ablation(self, layer: str) -> str:
        """A layer's ablation, keeping the run, the category and the selection (si_stat, threshold)."""
        return self._build(f"/layers/{_seg(layer)}/ablation", (*_RUN, "category", "si_stat", "threshold"))

    def visualization(self, run_id: int, layer: str, unit: int, direction: str, index: int) -> str:
        """An optimised image of a unit (PNG)."""
        return self._build(f"/images/visualizations/{_seg(layer)}/{int(unit)}/{_seg(direction)}/{int(index)}.png", (),
                           {"run": run_id})

    def classes(self, layer: str, unit: int, stat: str) -> str:
        """A unit's class profile on one stat, keeping the run and the category."""
        extra = {"stat": stat} if stat != DEFAULT_CLASS_STAT else None
        return self._build(f"/layers/{_seg(layer)}/units/{int(unit)}/classes", (*_RUN, "category"), extra)

    def claims(self, layer: str | None = None) -> str:
        """`/claims` with the current score parameters, on a layer (default: the page's own choice)."""
        return self._build("/claims", _SCORES, {"layer": layer})

    def categories(self) -> str:
        """`/categories`: every category of the current run, layer by layer."""
        return self._build("/categories", _SCORES)

    def compare(self, a: int | None = None, b: int | None = None, layer: str | None = None) -> str:
        """`/compare` of runs a and b (default: the latest and the one before), with the current score parameters."""
        kept = {k: self.params[k] for k in _COMPARE if k in self.params}
        return self._build("/compare", (), {"a": a, "b": b, "layer": layer, **kept})  # the runs first

    def skipped(self) -> str:
        """`/skipped` for the current run."""
        return self._build("/skipped", _RUN)

    def layer_csv(self, layer: str) -> str:
        """The unit table of a layer as CSV."""
        return self._build(f"/api/layers/{_seg(layer)}.csv", _SCORES)

    def class_images(self, layer: str, unit: int, wnid: str, stat: str) -> str:
        """One class's images ranked by a unit's response, keeping the run and the category."""
        extra = {"stat": stat} if stat != DEFAULT_CLASS_STAT else None
        return self._build(f"/layers/{_seg(layer)}/units/{int(unit)}/classes/{_seg(wnid)}", (*_RUN, "category"), extra)

    def image(self, run_id: int, image_id: int, size: int | None = None) -> str:
        """An image by id (never by path), or its thumbnail."""
        return self._build(f"/images/{int(image_id)}", (), {"run": run_id, "size": size})

    def static(self, name: str) -> str:
        """A file under static/, versioned by its digest so that browsers may cache it for good."""
        digest = static_files.version(name)
        return f"{self.root}/static/{quote(name)}" + (f"?v={digest}" if digest else "")

    def docs(self) -> str:
        """The OpenAPI UI."""
        return f"{self.root}/docs"

    def openapi(self) -> str:
        """The OpenAPI schema that /docs shows."""
        return f"{self.root}/openapi.json"

    def api(self, page_url: str) -> str:
        """The JSON twin of a page URL built above: the same path and query under /api."""
        return self.root + "/api" + page_url[len(self.root):]
