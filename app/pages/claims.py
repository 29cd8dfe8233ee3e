"""`/claims`: each of the study's claims tested on this DB, beside its control, with a verdict.

The tests (docs/claims.md) reuse what the layer and class pages compute: the layer's selective units
against the rest, the label-permutation null, the class profiles, and per unit the category's share
in the rest's far tails (app.data.layer_tests.tails). Every threshold and verdict rule is
unitscope.claim_rules'; this page words them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from app.data import layer_tests
from app.data.db import Reader
from app.data.units import class_profile
from app.figures import percent as _pct
from app.pages import layer as layer_page
from app.pages.layer import LayerContext, NullStat
from app.params import NAME_MAX, ScoreParams
from app.render import Page
from app.urls import Urls
from unitscope import claim_rules, nulls
from unitscope.claim_rules import MIN_CATEGORY, TWO_SIDED_LOW, Verdict
from unitscope.data.runs import Run, require_layer, require_run

LOW_LEVEL_CLAIM = "The selectivity is not explained by low-level image statistics."


class ClaimsParams(ScoreParams):
    """The layer's score parameters, and which layer (default: an intermediate one, as in the study)."""

    layer: str | None = Field(None, min_length=1, max_length=NAME_MAX,
                              description="layer to test; default: the deepest at ≤ 2/3 of the network's depth")


class Claim(BaseModel):
    """One claim of the study, its test on this DB, the control it is read against, and the verdict."""

    id: str
    claim: str
    test: str
    value: float | None = Field(description="the test's number on this DB")
    control: str = Field(description="what the value is compared with, and that comparison's numbers")
    verdict: Verdict
    reason: str = Field(description="why this verdict")
    evidence_url: str


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
    return "n/a" if stat is None or stat.p is None else f"p = {stat.p:.3g}"


def _selective(ctx: LayerContext, urls: Urls) -> Claim:
    stat = _null_stat(ctx, "selective")
    sel = ctx.groups.selective.units
    n_units = len(ctx.units)
    value = float(sel)
    control = ("random labels (same category size): "
               + (f"mean {stat.null_mean:.1f}, 95th percentile {stat.null_p95:.1f} selective units, {_p(stat)}"
                  if stat and stat.null_mean is not None else "not available"))
    verdict = claim_rules.selective_verdict(None if stat is None else stat.p, sel, bool(ctx.warnings))
    if verdict == "cannot_tell":
        reason = "; ".join(ctx.warnings) or "no permutation null (the category or the rest has no image)"
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
    sel, rest = ctx.groups.selective, ctx.groups.rest
    chance = _null_stat(ctx, "selective_negative")
    chosen = [u.selective for u in ctx.units]
    gap = None
    if sel.units and rest.units:
        result = nulls.group_gap([u.in_bottom for u in ctx.units], chosen, permutations=permutations, seed=seed)
        gap = NullStat(name="median_gap", description="median in_bottom, selective units minus random groups "
                       "of as many units", observed=result.observed, null_mean=result.null_mean,
                       null_p95=result.null_p95, p=result.p_value, valid=result.valid)
    control = (f"the rest: {_pct(rest.share_with_bottom_at_base_rate)} of {rest.units} units; median in_bottom "
               f"{_num(sel.median_in_bottom)} (selective) vs {_num(rest.median_in_bottom)} (rest), that gap against "
               f"random groups of {sel.units} units {_p(gap)}; against random labels {_p(chance)}")
    share = sel.share_with_bottom_at_base_rate
    verdict = claim_rules.negative_verdict(share if sel.units else None, None if gap is None else gap.p,
                                           bool(ctx.warnings))
    if verdict == "cannot_tell":
        reason = "; ".join(ctx.warnings) or ("no selective unit" if not sel.units else "no unit outside the selective ones")
    elif verdict == "does_not_hold":
        reason = f"only {_pct(share)} of the selective units reach the base rate among their bottom {ctx.k}"
    elif verdict == "holds":
        reason = (f"{_pct(share)} of the selective units reach the base rate, and their median in_bottom is above "
                  f"the rest's by more than a random group of as many units shows ({_p(gap)})")
    else:
        reason = (f"{_pct(share)} of the selective units reach the base rate, but so do "
                  f"{_pct(rest.share_with_bottom_at_base_rate)} of the rest: their median in_bottom is no higher "
                  f"than a random group of as many units shows ({_p(gap)})")
    return Claim(
        id="negative",
        claim="Most selective units have many category images among their strongest negative responses.",
        test=f"share of selective units with in_bottom ({ctx.neg_stat}, k = {ctx.k}) ≥ base rate "
             f"{ctx.base_rate:.1f}, against the rest and against random labels",
        value=share, control=control, verdict=verdict, reason=reason, evidence_url=urls.layer(ctx.layer),
    )


def _two_sided(ctx: LayerContext, low: np.ndarray, high: np.ndarray, urls: Urls) -> Claim:
    chosen = np.array([u.selective for u in ctx.units], dtype=bool)
    tail = claim_rules.TAIL
    sel_low = low[chosen]
    share = float((sel_low >= TWO_SIDED_LOW).mean()) if chosen.any() else None
    med = lambda a: float(np.nanmedian(a)) if a.size and not np.isnan(a).all() else None  # noqa: E731
    rest_low, sel_high = med(low[~chosen]), med(high[chosen])
    control = (f"a one-sided (half-normal) unit puts about 0% of its category below the rest's lower decile, a "
               f"unit blind to it {100 * tail:.0f}%; selective units: median {_pct(med(sel_low))} below "
               f"({ctx.neg_stat}), {_pct(sel_high)} above the upper decile ({ctx.pos_stat}); the rest: median "
               f"{_pct(rest_low)} below")
    verdict = claim_rules.two_sided_verdict(share, ctx.n_category)
    if verdict == "cannot_tell":
        reason = "no selective unit" if share is None else f"fewer than {MIN_CATEGORY} category images"
    elif verdict == "holds":
        reason = (f"{_pct(share)} of the selective units have at least {100 * TWO_SIDED_LOW:.0f}% of their "
                  "category images far below the rest as well as many far above")
    else:
        reason = (f"only {_pct(share)} of the selective units have {100 * TWO_SIDED_LOW:.0f}% of their "
                  "category far below the rest: their tuning is one-sided")
    return Claim(
        id="two_sided",
        claim="Responses to the category are two-sided, unlike the half-normal tuning of IT neurons.",
        test=f"per selective unit, the share of category images below the rest's lower decile of {ctx.neg_stat}; "
             f"two-sided when ≥ {100 * TWO_SIDED_LOW:.0f}%; the value is the share of selective units that are",
        value=share, control=control, verdict=verdict, reason=reason, evidence_url=urls.layer(ctx.layer),
    )


def _other_classes(reader: Reader, run: Run, ctx: LayerContext, urls: Urls) -> Claim:
    selective = sorted((u for u in ctx.units if u.selective), key=lambda u: -(u.si or 0.0))
    counts, category_classes = [], 0
    for u in selective:
        rows, _ = class_profile(reader, run, ctx.layer, u.unit, ctx.si_stat, ctx.category)
        counts.append(len(claim_rules.beats_category_median(rows)))
        category_classes = sum(row.is_category for row in rows)  # the same for every unit of the run
    share = float(np.mean([c > 0 for c in counts])) if counts else None
    control = ("a unit tuned to the category alone has 0 other classes above its category's median class"
               + (f"; selective units: median {float(np.median(counts)):g} such classes" if counts else ""))
    evidence = urls.classes(ctx.layer, selective[0].unit, ctx.si_stat) if selective else urls.layer(ctx.layer)
    verdict = claim_rules.other_classes_verdict(share, category_classes)
    if verdict == "cannot_tell":
        reason = "no selective unit" if not counts else "the category has fewer than 2 classes in this run"
    elif verdict == "holds":
        reason = (f"for {_pct(share)} of the selective units, some other classes have a higher mean than the "
                  "category's median class")
    else:
        reason = f"only {_pct(share)} of the selective units have another class above the category's median class"
    return Claim(
        id="other_classes",
        claim="Images of totally different categories drive a selective unit harder than other breeds of its own.",
        test=f"per selective unit, the non-category classes whose mean ({ctx.si_stat}) beats the category's median "
             "class; the value is the share of selective units with at least one",
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


def build(reader: Reader, p: ClaimsParams, urls: Urls, *, permutations: int, seed: int) -> ClaimsContext:
    """Every claim on the chosen layer, with the layer page's own numbers as evidence."""
    run = require_run(reader, p.run)
    if p.layer is None:
        layer, layer_reason = claim_rules.default_layer(list(run.layers))
    else:
        require_layer(run, p.layer)
        layer, layer_reason = p.layer, f"{p.layer}, as asked"
    ctx = layer_page.build(reader, layer, p, permutations=permutations, seed=seed)
    low, high = layer_tests.tails(reader, run, layer, category=p.category, neg_stat=p.neg_stat, pos_stat=p.pos_stat)
    claims = [
        _selective(ctx, urls), _negative(ctx, urls, permutations=permutations, seed=seed), _two_sided(ctx, low, high, urls),
        _other_classes(reader, run, ctx, urls), _low_level(ctx, urls),
    ]
    return ClaimsContext(
        run_id=run.run_id, layer=layer, layer_source="default" if p.layer is None else "given",
        layer_reason=layer_reason, layers=list(run.layers), category=ctx.category,
        categories=ctx.categories, k=ctx.k, k_reason=ctx.k_reason, threshold=ctx.threshold, si_stat=ctx.si_stat,
        warnings=ctx.warnings, permutations=ctx.null.permutations if ctx.null else None, claims=claims,
    )


PAGE: Page[ClaimsContext] = Page(
    "claims.html", lambda ctx, urls: urls.claims(ctx.layer if ctx.layer_source == "given" else None)
)
