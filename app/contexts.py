"""One context builder per page: the HTML page and its JSON twin both come from these."""

from __future__ import annotations

from app import class_profile, layer_controls, low_level, queries, reliability
from app.db import Reader
from app.models import (
    CategoryInfo,
    Histogram,
    ImageEntry,
    IndexContext,
    LayerContext,
    LayerInfo,
    LayerSummary,
    RunInfo,
    ScoreInfo,
    SkippedContext,
    SkippedFile,
    UnitContext,
    UnitScore,
)
from app.overlays import map_scale, overlays
from app.params import RunParams, ScoreParams, UnitParams
from app.problems import NotFound
from app.urls import Urls
from worker import controls, metrics_sql

THUMBNAIL = 160  # px, the unit page's image size


def base_rate(k: int, n_images: int, n_category: int) -> float:
    """The expected in_top/in_bottom of a unit blind to the category: min(k, N) x category share."""
    if n_images == 0:
        return 0.0
    return min(k, n_images) * n_category / n_images


def run_info(run: queries.Run) -> RunInfo:
    """What a page shows of a run."""
    return RunInfo(
        run_id=run.run_id, model=run.model, weights=run.weights, weights_sha256=run.weights_sha256,
        preprocessing=run.preprocessing, device=run.device, dtype=run.dtype, images=run.images,
        skipped=run.skipped, n_files=run.n_files, started_at=run.started_at, finished_at=run.finished_at,
        categories=[CategoryInfo(name=n, images=c) for n, c in run.categories.items()],
    )


def resolve_k(p: ScoreParams, n_images: int) -> tuple[int, str, str]:
    """The k a view uses, where it came from ('given' or 'default') and why, for the page."""
    if p.k is not None:
        return p.k, "given", f"k = {p.k}, as given"
    k, reason = controls.default_k(max(n_images, 1))
    return k, "default", reason


def _score_info(run: queries.Run, p: ScoreParams) -> ScoreInfo:
    """The view's parameters with k resolved once, and the warnings that follow from them."""
    n_category = queries.require_category(run, p.category)
    k, k_source, k_reason = resolve_k(p, run.images)
    overlap = controls.overlap_warning(k, run.images)
    return ScoreInfo(
        run_id=run.run_id, category=p.category, k=k, pos_stat=p.pos_stat, neg_stat=p.neg_stat,
        si_stat=p.si_stat, threshold=p.threshold, n_images=run.images, n_category=n_category,
        base_rate=base_rate(k, run.images, n_category), categories=list(run.categories),
        k_source=k_source, k_reason=k_reason, warnings=[] if overlap is None else [overlap],
    )


def index(reader: Reader, p: RunParams) -> IndexContext:
    """`/`: runs, and the layers of the shown run."""
    run = queries.find_run(reader, p.run)
    layers = [] if run is None else [
        LayerInfo(name=name, units=units, position=position, module=module)
        for name, (units, position, module) in run.layers.items()
    ]
    return IndexContext(
        run=None if run is None else run_info(run),
        runs=[run_info(r) for r in queries.runs(reader)],
        layers=layers,
    )


def layer(reader: Reader, name: str, p: ScoreParams, *, permutations: int, seed: int) -> LayerContext:
    """`/layers/{layer}`: every unit's (si, in_top, in_bottom) for the parameters, with the layer's controls."""
    run = queries.require_run(reader, p.run)
    queries.require_layer(run, name)
    info = _score_info(run, p)
    scores = queries.layer_scores(reader, run, name, p, info.k)
    halves = reliability.split_half(reader, run, name, p.category, p.si_stat)
    chance = layer_controls.chance(scores.rows, info.k, run.images, info.n_category)
    auroc, null = layer_controls.layer_tests(reader, run, name, p, info.k, permutations=permutations, seed=seed)
    fdr = layer_controls.FDR
    units = [
        UnitScore(
            unit=u, si=si, in_top=t, in_bottom=b, selective=layer_controls.selective(si, p.threshold),
            p_top=p_top, p_bottom=p_bottom, q_top=q_top, q_bottom=q_bottom,
            significant_top=q_top < fdr, significant_bottom=q_bottom < fdr, auroc=auroc[u],
            si_half_a=halves.si_a.get(u), si_half_b=halves.si_b.get(u),
        )
        for (u, si, t, b), p_top, p_bottom, q_top, q_bottom, in zip(
            scores.rows, *(chance[c].tolist() for c in ("p_top", "p_bottom", "q_top", "q_bottom"))
        )
    ]
    selective = [u.unit for u in units if u.selective]
    return LayerContext(
        **info.model_dump(), layer=name, units=units,
        selective=len(selective), source=scores.source,
        groups=layer_controls.groups(scores.rows, p.threshold, info.base_rate), null=null,
        low_level=low_level.for_layer(reader, run, name, selective, p), split_half=halves.summary,
    )


def layers(reader: Reader, p: ScoreParams) -> list[LayerSummary]:
    """`/layers`: per layer, the selective units against the rest (no AUROC or null: see app.layer_controls)."""
    run = queries.find_run(reader, p.run)
    if run is None:
        return []
    info = _score_info(run, p)
    result = []
    for name, (units, position, _) in run.layers.items():
        groups = layer_controls.groups(queries.layer_scores(reader, run, name, p, info.k).rows,
                                       p.threshold, info.base_rate)
        result.append(LayerSummary(
            name=name, units=units, position=position, selective=groups.selective.units,
            selective_bottom=groups.selective.with_bottom_at_base_rate, groups=groups,
            run_id=run.run_id, category=p.category, k=info.k, k_source=info.k_source, k_reason=info.k_reason,
            threshold=p.threshold, base_rate=info.base_rate, categories=info.categories, warnings=info.warnings,
        ))
    return result


def unit(reader: Reader, layer_name: str, unit_id: int, p: UnitParams, urls: Urls) -> UnitContext:
    """`/layers/{layer}/units/{unit}`: three rankings of n images, the scores, and a histogram."""
    run = queries.require_run(reader, p.run)
    units = queries.require_unit(run, layer_name, unit_id)
    # Kept whole in an LRU: a repeated unit view costs no query at all.
    key = (reader.generation.identity, run.run_id, layer_name, unit_id, urls.root, *sorted(p.model_dump().items()))
    return reader.caches.units.get_or_compute(key, lambda: _unit(reader, run, layer_name, unit_id, units, p, urls))


def _unit(
    reader: Reader, run: queries.Run, layer_name: str, unit_id: int, units: int, p: UnitParams, urls: Urls
) -> UnitContext:
    info = _score_info(run, p)
    score = queries.layer_scores(reader, run, layer_name, p, info.k).by_unit.get(unit_id)
    if score is None:
        raise NotFound(f"no responses for unit {unit_id} of {layer_name}")
    stats: dict[metrics_sql.RankKind, str] = {"positive": p.pos_stat, "near_zero": p.near_stat, "negative": p.neg_stat}
    ranked = queries.rankings(reader, run, layer_name, unit_id, stats, p.category, p.n)
    crops, maps = overlays(reader, run, layer_name, unit_id, sorted({r[0] for rs in ranked.values() for r in rs}))
    rows = {
        kind: [
            ImageEntry(
                image=image_id, wnid=wnid, class_name=class_name, is_category=bool(is_cat), value=float(value),
                url=urls.image(run.run_id, image_id), thumbnail=urls.image(run.run_id, image_id, THUMBNAIL),
                crop=crops.get(image_id), map=maps.get(image_id),
            )
            for image_id, wnid, class_name, is_cat, value in ranked[kind]
        ]
        for kind in stats
    }
    binned = queries.histogram(reader, run, layer_name, unit_id, p.si_stat, p.category)
    halves = reliability.split_half(reader, run, layer_name, p.category, p.si_stat)
    _, si, in_top, in_bottom = score
    return UnitContext(
        **info.model_dump(), layer=layer_name, unit=unit_id, units=units, n=p.n, near_stat=p.near_stat,
        si=si, in_top=in_top, in_bottom=in_bottom, selective=layer_controls.selective(si, p.threshold),
        si_half_a=halves.si_a.get(unit_id), si_half_b=halves.si_b.get(unit_id),
        positive=rows["positive"], near_zero=rows["near_zero"], negative=rows["negative"],
        histogram=Histogram(stat=p.si_stat, edges=binned.edges if binned else [],
                            category=binned.category if binned else [], rest=binned.rest if binned else []),
        classes=class_profile.summary(
            *class_profile.profile(reader, run, layer_name, unit_id, p.si_stat, p.category), p.si_stat),
        map_scale=map_scale(maps.values()),
        low_level=low_level.for_unit(reader, run, layer_name, unit_id, p, info.k),
        prev_unit=unit_id - 1 if unit_id > 0 else None,
        next_unit=unit_id + 1 if unit_id + 1 < units else None,
    )


def skipped(reader: Reader, p: RunParams) -> SkippedContext:
    """`/skipped`: the run's skipped files with their reasons."""
    run = queries.find_run(reader, p.run)
    if run is None:
        return SkippedContext(run_id=None, count=0, files=[])
    files = [SkippedFile(file_id=f, path=path, reason=reason) for f, path, reason in queries.skipped(reader, run)]
    return SkippedContext(run_id=run.run_id, count=len(files), files=files)
