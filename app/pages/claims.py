"""`/claims`: each of the study's claims tested on this DB, beside its control, with a verdict.

The tests (docs/claims.md) reuse what the layer and class pages compute: the layer's selective units
against the rest, the label-permutation null, the class profiles, and per unit the category's share
in the rest's far tails (app.data.layer_tests.tails). Every threshold and verdict rule is
unitscope.claim_rules'; this page words them.
"""

from __future__ import annotations

import itertools
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from app.data import layer_tests
from app.data.db import Reader
from app.data.units import class_profile
from app.figures import percent as _pct
from app.pages import intervention_claims
from app.pages import layer as layer_page
from app.pages.claim_models import Cell, Claim, Robustness
from app.pages.layer import LayerContext, NullStat
from app.params import NAME_MAX, ScoreParams
from app.render import Page
from app.urls import Urls
from unitscope import claim_rules, nulls, stats
from unitscope.claim_rules import MIN_CATEGORY, Verdict
from unitscope.data.basis import basis_si
from unitscope.data.runs import Run, require_layer, require_run

LOW_LEVEL_CLAIM = "The selectivity is not explained by low-level image statistics."
AXIS_CLAIM = "The units are more selective than random directions of the same layer's space."


class ClaimsParams(ScoreParams):
    """The layer's score parameters, and which layer (default: an intermediate one, as in the study)."""

    layer: str | None = Field(None, min_length=1, max_length=NAME_MAX,
                              description="layer to test; default: the deepest at ≤ 2/3 of the network's depth")


class ClaimsContext(BaseModel):
    """`/claims`: the study's claims on one layer of one run, for one category."""

    run_id: int
    layer: str
    layer_source: Literal["given", "default"]
    layer_reason: str
    layers: list[str] = Field(description="the run's layers, for the page's selector")
    category: str
    categories: list[str]
    k: int
    k_reason: str
    threshold: float
    si_stat: str
    warnings: list[str]
    permutations: int | None
    claims: list[Claim]


def _null_stat(ctx: LayerContext, name: str) -> NullStat | None:
    return next((s for s in ctx.null.stats if s.name == name), None) if ctx.null else None


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _p(stat: NullStat | None) -> str:
    """A permutation p as a reader takes it: 'p = 0.012', or, when no permutation reached the observed value (p is
    then 1 / (permutations + 1), its floor), 'p < 0.001 (1,000 permutations)'."""
    if stat is None or stat.p is None:
        return "n/a"
    if stat.valid and stat.p * (stat.valid + 1) <= 1 + 1e-9:
        return f"p < {1 / stat.valid:.2g} ({stat.valid:,} permutations)"
    return f"p = {stat.p:.3g}"


def _selective(ctx: LayerContext, urls: Urls) -> Claim:
    stat = _null_stat(ctx, "selective")
    sel = ctx.groups.selective.units
    n_units = len(ctx.units)
    value = sel  # a count: shown as one
    control = ("random labels (same category size): "
               + (f"mean {stat.null_mean:.1f}, 95th percentile {stat.null_p95:.1f} selective units, {_p(stat)}"
                  if stat and stat.null_mean is not None else "not available"))
    verdict = claim_rules.selective_verdict(None if stat is None else stat.p, sel)
    if verdict == "cannot_tell":
        reason = "no permutation null (the category or the rest has no image)"
    elif verdict == "holds":
        reason = f"{sel} of {n_units} units are selective, more than under random labels ({_p(stat)})"
    else:
        reason = f"{sel} selective units is what random labels give ({_p(stat)})"
    return Claim(
        id="selective", claim="Many intermediate-layer units are category-selective.",
        test=f"units with SI ({ctx.si_stat}) ≥ {ctx.threshold:g}, against a label-permutation null",
        value=value, control=control, verdict=verdict, reason=reason, evidence_url=urls.layer(ctx.layer),
    )


def _negative(ctx: LayerContext, urls: Urls, *, permutations: int, seed: int) -> Claim:
    """The study's count, in_bottom >= base rate, also counts an image that is both among a unit's strongest
    positives and its strongest negatives (excited in one place of its map, inhibited in another). The
    verdict rests on the exclusive set: the bottom-k images not in the top k."""
    sel, rest = ctx.groups.selective, ctx.groups.rest
    chance = _null_stat(ctx, "selective_negative")
    chosen = [u.selective for u in ctx.units]
    gap = None
    if sel.units and rest.units:
        # The category's share among each unit's bottom-only images, not their count: a selective unit shares more
        # of its bottom k with its top k, so it has fewer bottom-only images to count.
        result = nulls.group_gap([u.bottom_only_share for u in ctx.units], chosen, permutations=permutations,
                                 seed=seed)
        gap = NullStat(name="median_share_gap", description="median bottom_only_share, selective units minus "
                       "random groups of as many units", observed=result.observed, null_mean=result.null_mean,
                       null_p95=result.null_p95, p=result.p_value, valid=result.valid)
    share = sel.share_with_bottom_only_enriched
    study = sel.share_with_bottom_at_base_rate
    control = (f"the rest: {_pct(rest.share_with_bottom_only_enriched)} of {rest.units} units; the category's "
               f"median share of the bottom-only images {_pct(sel.median_bottom_only_share)} (selective, of a median "
               f"{_num(sel.median_in_bottom_only)} category images) vs {_pct(rest.median_bottom_only_share)} (rest, of "
               f"{_num(rest.median_in_bottom_only)}), that gap against random groups of {sel.units} units {_p(gap)}; "
               f"the category is {ctx.n_category / ctx.n_images:.1%} of the run. The study's count, with the images "
               f"also in the top {ctx.k}: {_pct(study)} of the selective units and "
               f"{_pct(rest.share_with_bottom_at_base_rate)} of the rest reach the base rate (median overlap "
               f"{_num(sel.median_overlap)} of {ctx.k} images for the selective units, {_num(rest.median_overlap)} for "
               f"the rest); against random labels {_p(chance)}")
    verdict = claim_rules.negative_verdict(share if sel.units else None, None if gap is None else gap.p,
                                           bool(ctx.warnings))
    enriched = f"have more {ctx.category} images than chance among their bottom-only images"
    if verdict == "cannot_tell":
        reason = "; ".join(ctx.warnings) or ("no selective unit" if not sel.units else "no unit outside the selective ones")
    elif verdict == "does_not_hold":
        reason = (f"only {_pct(share)} of the selective units {enriched} (the bottom {ctx.k} less their top "
                  f"{ctx.k}; the study's count, overlap included: {_pct(study)} reach the base rate)")
    elif verdict == "holds":
        reason = (f"{_pct(share)} of the selective units {enriched}, and the category's median share of those "
                  f"images is above the rest's by more than a random group of as many units shows ({_p(gap)})")
    else:
        reason = (f"{_pct(share)} of the selective units {enriched}, but so do "
                  f"{_pct(rest.share_with_bottom_only_enriched)} of the rest, and the category's median share of "
                  f"those images is no higher than a random group of as many units shows ({_p(gap)})")
    return Claim(
        id="negative",
        claim="Most selective units have many category images among their strongest negative responses.",
        test=f"share of selective units whose bottom-only images (the bottom {ctx.k} by {ctx.neg_stat} less the top "
             f"{ctx.k} by {ctx.pos_stat}) hold more of the category than as many images drawn from outside the top "
             f"{ctx.k} (hypergeometric, BH q < {claim_rules.FDR} across the layer's units); against the rest and "
             f"random groups of as many units",
        value=share, study_value=study, control=control, verdict=verdict, reason=reason,
        evidence_url=urls.layer(ctx.layer),
    )


def _two_sided(ctx: LayerContext, low: np.ndarray, high: np.ndarray, urls: Urls) -> Claim:
    """Two-sided when the selective units put more of their category far below the rest than a unit blind to
    the category does (TAIL), and more than the other units of the layer do (a rank test over units)."""
    chosen = np.array([u.selective for u in ctx.units], dtype=bool)
    tail = claim_rules.TAIL
    defined = ~np.isnan(low)
    sel_low, rest_low = low[chosen & defined], low[~chosen & defined]
    median = float(np.median(sel_low)) if sel_low.size else None
    rest_median = float(np.median(rest_low)) if rest_low.size else None
    p = stats.mann_whitney_p(sel_low, rest_low, alternative="greater") if sel_low.size and rest_low.size else None
    sel_high = high[chosen & ~np.isnan(high)]
    control = (f"a unit blind to the category puts about {100 * tail:.0f}% of it below the rest's lower decile, a "
               f"one-sided (half-normal) unit about 0%; the other units: median {_pct(rest_median)} below; "
               f"selective above the rest's share, one-sided Mann–Whitney over units: "
               f"{'n/a' if p is None else f'p = {p:.3g}'}; selective units' median above the upper decile "
               f"({ctx.pos_stat}): {_pct(float(np.median(sel_high)) if sel_high.size else None)}")
    verdict = claim_rules.two_sided_verdict(median, p, ctx.n_category)
    if verdict == "cannot_tell":
        reason = ("no selective unit" if not sel_low.size else "no other unit to compare with" if not rest_low.size
                  else f"fewer than {MIN_CATEGORY} category images")
    elif verdict == "holds":
        reason = (f"the selective units' median {_pct(median)} of their category far below the rest is above the "
                  f"{100 * tail:.0f}% of a blind unit and above the other units' {_pct(rest_median)} (p = {p:.3g})")
    elif verdict == "holds_not_specific":
        reason = (f"the selective units' median {_pct(median)} below is above the {100 * tail:.0f}% of a blind unit, "
                  f"but no higher than the other units' {_pct(rest_median)} (p = {p:.3g})")
    else:
        reason = (f"the selective units' median {_pct(median)} of their category far below the rest is no more than "
                  f"the {100 * tail:.0f}% of a unit blind to it: their tuning is one-sided")
    return Claim(
        id="two_sided",
        claim="Responses to the category are two-sided, unlike the half-normal tuning of IT neurons.",
        test=f"per unit, the share of category images below the rest's lower decile of {ctx.neg_stat}; the value is "
             f"the selective units' median, compared with a blind unit's {100 * tail:.0f}% and with the other units "
             f"(one-sided Mann–Whitney over units)",
        value=median, control=control, verdict=verdict, reason=reason, evidence_url=urls.layer(ctx.layer),
    )


def _other_classes(reader: Reader, run: Run, ctx: LayerContext, urls: Urls) -> Claim:
    """Classes are ranked only with at least FEW_IMAGES images: a class mean over one or two images is noise."""
    selective = sorted((u for u in ctx.units if u.selective), key=lambda u: -(u.si or 0.0))
    counts, category_classes, too_few, named = [], 0, 0, ""
    for u in selective:
        rows, names = class_profile(reader, run, ctx.layer, u.unit, ctx.si_stat, ctx.category)
        beaten = claim_rules.beats_category_median(rows)
        counts.append(len(beaten))
        # The same for every unit of the run: the category's rankable classes, and the classes left out.
        category_classes = sum(row.is_category and not row.few_images for row in rows)
        too_few = sum(row.few_images for row in rows)
        if u is selective[0]:
            named = "; ".join(names[key] for key in beaten[:5]) + (" …" if len(beaten) > 5 else "")
    share = float(np.mean([c > 0 for c in counts])) if counts else None
    few = claim_rules.FEW_IMAGES
    control = ("a unit tuned to the category alone has 0 other classes above its category's median class"
               + (f"; selective units: median {float(np.median(counts)):g} such classes; unit {selective[0].unit} "
                  f"(highest SI): {named or 'none'}" if counts else "")
               + (f"; {too_few} classes of the run have fewer than {few} images and are not ranked" if counts else ""))
    evidence = urls.classes(ctx.layer, selective[0].unit, ctx.si_stat) if selective else urls.layer(ctx.layer)
    verdict = claim_rules.other_classes_verdict(share, category_classes)
    if verdict == "cannot_tell":
        reason = ("no selective unit" if not counts
                  else f"the category has fewer than 2 classes with {few} or more images in this run")
    elif verdict == "holds":
        reason = (f"for {_pct(share)} of the selective units, some other classes (of {few} or more images) have a "
                  "higher mean than the category's median class")
    else:
        reason = f"only {_pct(share)} of the selective units have another class above the category's median class"
    return Claim(
        id="other_classes",
        claim="Images of totally different categories drive a selective unit harder than other breeds of its own.",
        test=f"per selective unit, the non-category classes whose mean ({ctx.si_stat}) beats the category's median "
             f"class, both over classes of at least {few} images; the value is the share of selective units with "
             "at least one",
        value=share, control=control, verdict=verdict, reason=reason, evidence_url=evidence,
    )


def _low_level(ctx: LayerContext, urls: Urls) -> Claim:
    ll = ctx.low_level
    test = ("per selective unit, the cross-validated R² (r2_cv) of its responses to the category on five "
            "low-level image statistics; the value is the median over the selective units")
    if ll is None:
        return Claim(id="low_level", claim=LOW_LEVEL_CLAIM, test=test, value=None,
                     control="the low-level statistics are not recorded in this DB (a run before they were)",
                     verdict="cannot_tell", reason="this run has no image_stats", evidence_url=urls.layer(ctx.layer))
    control = (f"threshold {ll.threshold:g}: below it the statistics predict under a tenth of the within-category "
               f"variance; statistics that predict nothing give about 0 (90th percentile over the selective units: "
               f"{_num(ll.r2_cv_p90)})")
    verdict = claim_rules.low_level_verdict(ll.r2_cv_median)
    if verdict == "cannot_tell":
        reason = "no selective unit with enough category images for r2_cv"
    elif verdict == "holds":
        reason = (f"the median r2_cv over {len(ll.units)} selective units is {_num(ll.r2_cv_median)}, "
                                    f"below {ll.threshold:g}")
    else:
        reason = (f"the median r2_cv over {len(ll.units)} selective units is "
                                            f"{_num(ll.r2_cv_median)}, at or above {ll.threshold:g}")
    return Claim(id="low_level", claim=LOW_LEVEL_CLAIM, test=test, value=ll.r2_cv_median, control=control,
                 verdict=verdict, reason=reason, evidence_url=urls.layer(ctx.layer))


def _higher(p: float | None) -> str:
    """The one-sided test that the units' SIs are higher than the directions', worded by its outcome."""
    if p is None:
        return "units higher than directions: n/a, one-sided Mann–Whitney"
    found = "units higher" if p < claim_rules.ALPHA else "units not higher"
    return f"{found}, one-sided Mann–Whitney p = {p:.3g}"


def _axis_aligned(reader: Reader, run: Run, ctx: LayerContext, urls: Urls) -> Claim:
    """The random-basis control (Bau et al. 2017): a layer's selectivity could lie in its space, not its units."""
    directions = basis_si(reader, run, ctx.layer, ctx.category, ctx.si_stat)
    test = (f"units with SI ({ctx.si_stat}) ≥ {ctx.threshold:g} against directions of random orthonormal bases of the "
            f"layer's {len(ctx.units)} channels with it (one-sided Fisher exact test)")
    if directions is None:
        return Claim(id="axis_aligned", claim=AXIS_CLAIM, test=test, value=None, verdict="cannot_tell",
                     control="no random bases: the run recorded none (python -m worker run --bases N)",
                     reason="this run has no random bases", evidence_url=urls.layer(ctx.layer))
    si = np.array([np.nan if u.si is None else u.si for u in ctx.units])
    units, rotated = si[~np.isnan(si)], directions[~np.isnan(directions)]
    per_basis = (np.nan_to_num(directions, nan=-1.0) >= ctx.threshold).sum(axis=1)
    sel = ctx.groups.selective.units
    p = stats.more_often_p(sel, units.size, int(per_basis.sum()), rotated.size) if units.size else None
    whole = stats.mann_whitney_p(units, rotated, alternative="greater") if units.size and rotated.size else None
    control = (f"{len(per_basis)} random bases (seeds 0–{len(per_basis) - 1}) of {directions.shape[1]} directions: "
               f"{', '.join(str(int(n)) for n in per_basis)} selective; the whole SI distributions: median "
               f"{_num(float(np.median(units)) if units.size else None)} for the units against "
               f"{_num(float(np.median(rotated)) if rotated.size else None)} for the directions ({_higher(whole)})")
    verdict = claim_rules.axis_aligned_verdict(p)
    rate = f"{sel} selective units against {per_basis.mean():.1f} selective directions per random basis"
    reason = {"cannot_tell": "no unit with an SI",
              "holds": f"{rate} (p = {_num(p)})",
              "does_not_hold": f"{rate} (p = {_num(p)}): random directions are selective as often"}[verdict]
    return Claim(id="axis_aligned", claim=AXIS_CLAIM, test=test, value=sel, control=control, verdict=verdict,
                 reason=reason, evidence_url=urls.layer(ctx.layer))


def build(reader: Reader, p: ClaimsParams, urls: Urls, *, permutations: int, seed: int) -> ClaimsContext:
    """Every claim on the chosen layer, with the layer page's own numbers as evidence."""
    run = require_run(reader, p.run)
    if p.layer is None:
        layer, layer_reason = run.default_layer()
    else:
        require_layer(run, p.layer)
        layer, layer_reason = p.layer, f"{p.layer}, as asked"
    ctx, cached = _claims(reader, run, layer, p, urls, permutations, seed)
    claims = [claim.model_copy() for claim in cached]  # the cached claims stay as computed: robustness is added here
    _add_robustness(claims, reader, run, layer, p, urls, permutations, seed)
    return ClaimsContext(
        run_id=run.run_id, layer=layer, layer_source="default" if p.layer is None else "given",
        layer_reason=layer_reason, layers=list(run.layers), category=ctx.category,
        categories=ctx.categories, k=ctx.k, k_reason=ctx.k_reason, threshold=ctx.threshold, si_stat=ctx.si_stat,
        warnings=ctx.warnings, permutations=ctx.null.permutations if ctx.null else None, claims=claims,
    )


def _claims(reader: Reader, run: Run, layer: str, p: ClaimsParams, urls: Urls, permutations: int,
            seed: int) -> tuple[LayerContext, list[Claim]]:
    """The layer page's context for the parameters, and every claim tested on it; cached, as the claims page of
    any specification of the grid needs those of all the others."""
    def compute() -> tuple[LayerContext, list[Claim]]:
        ctx = layer_page.build(reader, layer, p, permutations=permutations, seed=seed, measures=False)
        low, high = layer_tests.tails(reader, run, layer, category=p.category, neg_stat=p.neg_stat,
                                      pos_stat=p.pos_stat)
        return ctx, [
            _selective(ctx, urls), _negative(ctx, urls, permutations=permutations, seed=seed),
            _two_sided(ctx, low, high, urls), _other_classes(reader, run, ctx, urls), _low_level(ctx, urls),
            _axis_aligned(reader, run, ctx, urls), intervention_claims.negative_stimulus(reader, run, ctx, urls),
            intervention_claims.important(reader, run, ctx, urls),
        ]

    # The claims' evidence links carry the view's parameters: those are in the key too.
    key = (run.run_id, layer, "claims", urls.root, tuple(sorted(urls.params.items())), permutations, seed,
           *sorted(p.model_dump().items()))
    return reader.cached(key, compute)


def _add_robustness(claims: list[Claim], reader: Reader, run: Run, layer: str, p: ClaimsParams, urls: Urls,
                    permutations: int, seed: int) -> None:
    """Each claim's verdict under every specification of the grid, each the verdict /api/claims gives for it."""
    asked = (p.pos_stat, p.neg_stat, p.si_stat, p.threshold)
    cells: list[tuple[tuple[str, str, str, float], list[Verdict]]] = []
    for neg_stat, pos_stat, si_stat, threshold in itertools.product(
            claim_rules.GRID_NEG_STATS, claim_rules.GRID_POS_STATS, claim_rules.GRID_SI_STATS,
            claim_rules.GRID_THRESHOLDS):
        spec = (pos_stat, neg_stat, si_stat, threshold)
        if spec == asked:
            verdicts = [c.verdict for c in claims]
        else:
            change = {"pos_stat": pos_stat, "neg_stat": neg_stat, "si_stat": si_stat, "threshold": threshold}
            q = p.model_copy(update=change)
            # With the URLs of that view, so the cached claims are those its own request gets.
            verdicts = [c.verdict for c in _claims(reader, run, layer, q, urls.with_params(**change), permutations,
                                                   seed)[1]]
        cells.append((spec, verdicts))
    for i, claim in enumerate(claims):
        row = [Cell(pos_stat=pos, neg_stat=neg, si_stat=si, threshold=t, verdict=verdicts[i],
                    url=urls.with_params(pos_stat=pos, neg_stat=neg, si_stat=si, threshold=t).claims(p.layer))
               for (pos, neg, si, t), verdicts in cells]
        claim.robustness = Robustness(robust=claim_rules.robust(claim.verdict, [c.verdict for c in row]), cells=row)


PAGE: Page[ClaimsContext] = Page(
    "claims.html", lambda ctx, urls: urls.claims(ctx.layer if ctx.layer_source == "given" else None)
)
