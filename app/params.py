"""The parameters a view is computed with, shared by pages and their JSON twins, with their bounds."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from unitscope import claim_rules, schema

# Bounds: beyond them a request is refused with 422 rather than left to exhaust the server.
K_MAX = claim_rules.K_MAX  # images per unit ranking for in_top/in_bottom
N_MAX = schema.UNIT_ROW_MAX  # images per row on a unit page
ID_MAX = 2**31 - 1  # ids are INTEGER in the DB
THUMB_MIN, THUMB_MAX = 16, 512  # thumbnail edge in pixels
# The edges thumbnails are made at: a request is served at the next one up, so the disk cache holds at most
# this many files per image, whatever sizes clients ask for.
THUMB_SIZES = (64, 160, 320, 512)  # 160: the unit page's cards
NAME_MAX = 100  # layer and category names

StatName = Literal["mean", "max", "min"]
assert set(StatName.__args__) == set(schema.STATS)  # type: ignore[attr-defined]

_WHOLE = re.compile(r"-?[0-9]+")


def _whole_number(value: object) -> object:
    """Refuse '1.0', '1e3', ' 1' and the like: ids and counts are written as whole numbers."""
    if isinstance(value, str) and not _WHOLE.fullmatch(value):
        raise ValueError("must be a whole number")
    return value


def whole(lo: int, hi: int) -> Any:
    """A whole number in [lo, hi]. The bounds sit inside the type, before the validator: given as Field(ge, le) on
    the field, pydantic publishes them in the OpenAPI schema as `ge`/`le`, which no client reads, instead of
    `minimum`/`maximum`."""
    return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(_whole_number)]


def _blank_is_none(value: object) -> object:
    """An empty form field means "not given" (the page's form sends k= when left to the automatic k)."""
    return None if value == "" else value


def optional_whole(lo: int, hi: int) -> Any:
    """whole(lo, hi) or None, an empty form field counting as None."""
    return Annotated[whole(lo, hi) | None, BeforeValidator(_blank_is_none)]


class RunParams(BaseModel):
    """Which run to show."""

    model_config = ConfigDict(extra="ignore")

    run: whole(0, ID_MAX) | None = Field(None, description="run id; default: the latest complete run")


class ScoreParams(RunParams):
    """What defines a layer's scores: category, k and the three stats, plus the figure threshold."""

    category: str = Field(schema.DEFAULT_CATEGORY, min_length=1, max_length=NAME_MAX)
    # None: chosen from the run's size (unitscope.claim_rules.default_k), resolved once per view in app.pages.common.score_info.
    k: optional_whole(1, K_MAX) = Field(None, description=f"images in each unit's top/bottom (≤ {K_MAX}); "
                             f"default: the study's {schema.DEFAULT_K}, or a sixth of the images for a smaller run")
    pos_stat: StatName = Field(schema.DEFAULT_POS_STAT, description="stat ranking the strongest positive")
    neg_stat: StatName = Field(schema.DEFAULT_NEG_STAT, description="stat ranking the strongest negative")
    si_stat: StatName = Field(schema.DEFAULT_SI_STAT, description="stat the selectivity index is computed on")
    # allow_inf_nan: NaN fails every bound, and "should be less than or equal to 1" would not say why.
    threshold: float = Field(claim_rules.FIGURE_SI, ge=0.0, le=1.0, allow_inf_nan=False,
                             description="SI at or above which a unit is selective")


class UnitParams(ScoreParams):
    """A unit page adds the row length and the near-zero stat."""

    n: whole(1, N_MAX) = Field(schema.DEFAULT_N, description=f"images per row (≤ {N_MAX})")
    near_stat: StatName = Field(schema.DEFAULT_NEAR_STAT, description="stat whose |value| ranks near-zero images")
    order: Literal["si", "unit"] = Field("si", description="what prev/next follow: the layer's units by SI, largest "
                                         "first (the selective units lead), or by unit number")


class CategoriesParams(ScoreParams):
    """Every category at once: k within the stored ranks, as each k past them costs a scan per category and layer."""

    k: optional_whole(1, schema.RANKED_K) = Field(
        None, description=f"images in each unit's top/bottom (≤ {schema.RANKED_K}, the stored ranks); default: "
        "chosen from the run's size")


# ScoreParams' fields without its `run`, for a view over two runs.
_ScoreFields = create_model(
    "ScoreFields", __config__=ConfigDict(extra="ignore"),
    **{name: (f.annotation, f) for name, f in ScoreParams.model_fields.items() if name not in RunParams.model_fields},
)  # type: ignore[call-overload]


class CompareParams(_ScoreFields):  # type: ignore[misc, valid-type]
    """Two runs side by side (a and b), scored alike, and the layer whose units are paired."""

    a: whole(0, ID_MAX) | None = Field(None, description="run id; default: the latest complete run")
    b: whole(0, ID_MAX) | None = Field(None, description="run id; default: the complete run before a")
    layer: str | None = Field(None, min_length=1, max_length=NAME_MAX,
                              description="layer whose units' SI are paired (same model only); default: the "
                              "middle one of the layers both runs have")


class ImageParams(RunParams):
    """An image's run and optional thumbnail size."""

    size: whole(THUMB_MIN, THUMB_MAX) | None = Field(None, description="thumbnail edge in px, served at the next "
                                                     f"of the sizes {', '.join(map(str, THUMB_SIZES))}; omit "
                                                     "for the file")


class SearchParams(RunParams):
    """`/units`: a label search, its filters, its order and its page."""

    q: str | None = Field(None, max_length=NAME_MAX, description="text in a class or synset name, a WNID or a label "
                          "(any case); empty: every labelled unit")
    run: whole(0, ID_MAX) | None = Field(None, description="only this run; default: every run")
    layer: Annotated[str | None, BeforeValidator(_blank_is_none)] = Field(
        None, min_length=1, max_length=NAME_MAX, description="only this layer (empty: every layer)")
    side: Annotated[Literal["excites", "inhibits"] | None, BeforeValidator(_blank_is_none)] = Field(
        None, description="only terms that excite, or inhibit (empty: either)")
    max_q: float = Field(0.05, gt=0.0, le=1.0, allow_inf_nan=False, description="only terms with q at or below this")
    sort: Literal["auroc", "si", "d_prime", "q"] = Field("auroc", description="auroc: the best matching term's; "
                                                         "si, d_prime: the study's category (dog) on max; q: smallest first")
    limit: whole(1, 500) = Field(50, description="units per page (≤ 500)")
    offset: whole(0, ID_MAX) = Field(0, description="units skipped: the page's start")


# Defaults, to keep shared URLs short: links carry only the parameters that differ.
DEFAULTS: dict[str, object] = {
    name: f.default for model in (UnitParams, ImageParams) for name, f in model.model_fields.items()
}
