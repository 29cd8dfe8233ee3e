"""`/compare`: two runs side by side, by relative depth, and (same model) each unit's SI in a against b."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app import correlation, queries
from app.contexts import base_rate, resolve_k, run_info
from app.db import Reader
from app.models import RunInfo
from app.params import CompareParams, ScoreParams
from app.problems import NotFound
from app.shares import LayerShares, layer_shares


class CompareSide(BaseModel):
    """One of the two runs: what it is, and its layers' shares by depth."""

    run: RunInfo
    n_category: int = Field(description="the run's images in the category")
    k: int = Field(description="the k in use for this run: the one given, or this run's default")
    base_rate: float = Field(description="min(k, images) x category share, this run's own")
    layers: list[LayerShares]


class UnitPairs(BaseModel):
    """Each unit's SI in run a against run b, for one layer of one model."""

    layer: str
    units: list[int]
    si_a: list[float | None]
    si_b: list[float | None]
    pairs: int = Field(description="units with an SI in both runs: the correlations' n")
    spearman: float | None
    pearson: float | None


class CompareContext(BaseModel):
    """`/compare`: the parameters, both runs, and the unit pairs when the runs share a model."""

    category: str
    k: int | None = Field(description="the k given; null: each run uses its own default (see a.k, b.k)")
    pos_stat: str
    neg_stat: str
    si_stat: str
    threshold: float
    a: CompareSide
    b: CompareSide
    same_model: bool = Field(description="both runs ran the same model, so their units pair one to one")
    common_layers: list[str] = Field(description="layers both runs recorded with the same unit count")
    scatter: UnitPairs | None = Field(description="null unless same_model")
    runs: list[RunInfo] = Field(description="every complete run, the values a and b take")


def _pick(all_runs: list[queries.Run], a: int | None, b: int | None) -> tuple[queries.Run, queries.Run]:
    """a: the asked run or the latest; b: the asked run or the newest other one (a itself if it is alone)."""
    if not all_runs:
        raise NotFound("the database has no complete run yet")
    by_id = {r.run_id: r for r in all_runs}
    for run_id in (a, b):
        if run_id is not None and run_id not in by_id:
            raise NotFound(f"no complete run {run_id}")
    run_a = by_id[a] if a is not None else all_runs[0]
    if b is not None:
        return run_a, by_id[b]
    return run_a, next((r for r in all_runs if r.run_id != run_a.run_id), run_a)


def _side(reader: Reader, run: queries.Run, p: ScoreParams) -> CompareSide:
    n_category = queries.require_category(run, p.category)
    k = resolve_k(p, run.images)[0]
    return CompareSide(run=run_info(run), n_category=n_category, k=k, base_rate=base_rate(k, run.images, n_category),
                       layers=layer_shares(reader, run, p))


def _pairs(reader: Reader, a: queries.Run, b: queries.Run, layer: str, p: CompareParams) -> UnitPairs:
    si_a, si_b = ({unit: si for unit, si, _, _ in queries.layer_scores(
        reader, run, layer, _score(p, run), resolve_k(_score(p, run), run.images)[0]).rows} for run in (a, b))
    units = sorted(si_a)
    xs, ys = [si_a[u] for u in units], [si_b[u] for u in units]
    return UnitPairs(layer=layer, units=units, si_a=xs, si_b=ys, pairs=len(correlation.complete_pairs(xs, ys)[0]),
                     spearman=correlation.spearman(xs, ys), pearson=correlation.pearson(xs, ys))


def _score(p: CompareParams, run: queries.Run) -> ScoreParams:
    return ScoreParams(run=run.run_id, **p.model_dump(exclude={"a", "b", "layer"}))


def compare(reader: Reader, p: CompareParams) -> CompareContext:
    """Both runs' layer shares by relative depth; with one model, the units' SI of `layer` paired."""
    all_runs = queries.runs(reader)
    a, b = _pick(all_runs, p.a, p.b)
    common = [name for name, (units, _, _) in a.layers.items() if b.layers.get(name, (None,))[0] == units]
    same_model = a.model == b.model
    if p.layer is not None and p.layer not in common:
        raise NotFound(f"layer {p.layer!r} is not in both runs; both have {', '.join(common) or 'none'}")
    layer = p.layer if p.layer is not None else (common[len(common) // 2] if common else None)
    return CompareContext(
        **p.model_dump(exclude={"a", "b", "layer"}),
        a=_side(reader, a, _score(p, a)), b=_side(reader, b, _score(p, b)),
        same_model=same_model, common_layers=common,
        scatter=_pairs(reader, a, b, layer, p) if same_model and layer is not None else None,
        runs=[run_info(r) for r in all_runs],
    )
