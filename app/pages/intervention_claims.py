"""The claims the interventions test (docs/claims.md): `negative_stimulus` on the optimised images (worker.visualize)
and `important` on the ablation (worker.ablate). Each reads what its job stored; without it, it cannot tell and
says which command computes it.
"""

from __future__ import annotations

import numpy as np

from app.figures import percent as _pct
from app.pages.ablation import layer_ablation
from app.pages.claim_models import Claim
from app.pages.layer import LayerContext
from app.urls import Urls
from unitscope import claim_rules, stats
from unitscope.data.interventions import (
    category_mask,
    layer_visualizations,
    network_classes,
)
from unitscope.data.runs import Run
from unitscope.data.scores import selective_anywhere
from unitscope.data.source import Source

NEGATIVE_STIMULUS = ("The images that drive the selective units furthest below zero look like the category, to the "
                     "network itself.")
IMPORTANT = "The selective units matter for the category: silencing them costs it more than silencing others."


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def negative_stimulus(source: Source, run: Run, ctx: LayerContext, urls: Urls) -> Claim:
    """Per unit, the category's share of the network's probability on its negative-optimised images (mean over the
    unit's images); the selective units' against the control units': the other units visualised that are selective
    under no specification of the grid (scores.selective_anywhere), so no cell counts another's selective units."""
    test = (f"per unit, the {ctx.category} share of the network's probability on the images optimised to drive it down; "
            "the value is the selective units' median, against the other units visualised that are selective under no "
            "specification of the grid (one-sided Mann–Whitney over units)")
    stored = layer_visualizations(source, run, ctx.layer)
    classes = network_classes(source, run)
    command = f"python -m worker visualize --db DB --layer {ctx.layer}"
    if not stored or classes is None:
        return Claim(id="negative_stimulus", claim=NEGATIVE_STIMULUS, test=test, value=None, verdict="cannot_tell",
                     control=f"no optimised images of {ctx.layer} in this run ({command})",
                     reason="no feature visualisation stored", evidence_url=urls.layer(ctx.layer))
    mask = category_mask(source, run, classes, ctx.category)
    shares: dict[str, dict[int, list[float]]] = {"negative": {}, "positive": {}}
    for v in stored:
        shares[v.direction].setdefault(v.unit, []).append(v.category_p(mask))
    negative = {u: float(np.mean(s)) for u, s in shares["negative"].items()}
    positive = {u: float(np.mean(s)) for u, s in shares["positive"].items()}
    selective = {u.unit for u in ctx.units if u.selective}
    elsewhere = selective_anywhere(source, run, ctx.layer, ctx.category) - selective
    sel = sorted(u for u in negative if u in selective)
    rest = sorted(u for u in negative if u not in selective and u not in elsewhere)
    left_out = sum(u in elsewhere for u in negative)
    sel_neg, rest_neg = [negative[u] for u in sel], [negative[u] for u in rest]
    sel_pos = [positive[u] for u in sel if u in positive]
    p = stats.mann_whitney_p(np.array(sel_neg), np.array(rest_neg), alternative="greater") \
        if sel_neg and rest_neg else None
    # The test's p when every selective unit reads above every control: the best these group sizes allow.
    smallest = stats.mann_whitney_p(np.arange(len(sel_neg)) + len(rest_neg), np.arange(len(rest_neg)),
                                    alternative="greater") if sel_neg and rest_neg else None
    below = sum(negative[u] < positive[u] for u in sel if u in positive)
    chance = float(mask.mean())
    aside = f" ({left_out} visualised units selective under another specification left out)" if left_out else ""
    control = (f"the {len(rest)} control units' negative images{aside}: median {_pct(_median(rest_neg))}; the same selective "
               f"units' positive images: median {_pct(_median(sel_pos))} (negative below positive for {below} of "
               f"{len(sel_pos)}); a uniform reading gives {_pct(chance)} ({int(mask.sum())} of {mask.size} classes); "
               f"{len(sel)} of {len(selective)} selective units visualised; one-sided Mann–Whitney "
               f"{'n/a' if p is None else f'p = {p:.3g}'}")
    verdict = claim_rules.negative_stimulus_verdict(p, smallest)
    if verdict == "cannot_tell":
        reason = ("no selective unit has optimised images" if not sel_neg
                  else "no control unit has optimised images" if not rest_neg
                  else f"too few units visualised to tell: {len(sel)} selective against {len(rest)} control units, "
                       f"whose test cannot reach p < {claim_rules.ALPHA:g} even when every selective unit reads "
                       f"above every control (p = {smallest:.3g}); visualise more units ({command})")
    elif verdict == "holds":
        reason = (f"the network reads {_pct(_median(sel_neg))} {ctx.category} (median) in the selective units' "
                  f"negative images, more than in the control units' {_pct(_median(rest_neg))} (p = {p:.3g})")
    else:
        reason = (f"the network reads {_pct(_median(sel_neg))} {ctx.category} (median) in the selective units' "
                  f"negative images, no more than in the control units' {_pct(_median(rest_neg))} (p = {p:.3g}): "
                  "what drives them down looks no more like the category than what drives other units down")
    evidence = urls.unit(ctx.layer, sel[0]) + "#spectrum" if sel else urls.layer(ctx.layer)
    return Claim(id="negative_stimulus", claim=NEGATIVE_STIMULUS, test=test, value=_median(sel_neg), control=control,
                 verdict=verdict, reason=reason, evidence_url=evidence)


def important(source: Source, run: Run, ctx: LayerContext, urls: Urls) -> Claim:
    """Ablation: the selective group's change in top-1 accuracy on the category, against random groups of as many
    units, and against its change on the other classes."""
    test = (f"top-1 accuracy on {ctx.category} with the selective units' outputs set to zero, minus with nothing "
            "ablated; against random groups of as many of the other units (one-sided permutation p over the groups) and "
            "against the change on the other classes")
    abl = layer_ablation(source, run, ctx.layer, ctx.category, ctx.si_stat, ctx.threshold)
    evidence = urls.ablation(ctx.layer)
    if not abl.available:
        return Claim(id="important", claim=IMPORTANT, test=test, value=None, verdict="cannot_tell",
                     control=f"no ablation of these selective units in this run ({abl.command})"
                             + (f"; {abl.hidden}" if abl.hidden else ""),
                     reason=f"not ablated at SI ({ctx.si_stat}) ≥ {ctx.threshold:g}", evidence_url=evidence)
    sel = abl.groups[0]
    random = [g.delta_category for g in abl.groups if g.kind == "random" and g.delta_category is not None]
    verdict = claim_rules.important_verdict(abl.p, sel.delta_category, sel.delta_rest, len(random))
    p_text = "n/a" if abl.p is None else f"{abl.p:.3g}"
    control = (f"{len(random)} random groups of {len(sel.units)} units: median change on {ctx.category} "
               f"{_signed(_median(random))}, lowest {_signed(min(random) if random else None)}; the selective group's "
               f"change on the other classes {_signed(sel.delta_rest)}; nothing ablated: top-1 "
               f"{_pct(abl.baseline.top1_category if abl.baseline else None)} on {ctx.category} "
               f"({abl.n_category:,} images), {_pct(abl.baseline.top1_rest if abl.baseline else None)} on the rest "
               f"({abl.n_rest:,}); p = {p_text}")
    drop = f"silencing the {len(sel.units)} selective units changes top-1 on {ctx.category} by {_signed(sel.delta_category)}"
    reason = {
        "cannot_tell": abl.few_groups or "no category image to compare with",
        "holds": f"{drop}, more than random groups of as many units (p = {p_text}) and more than on the other classes "
                 f"({_signed(sel.delta_rest)})",
        "holds_not_specific": f"{drop}, more than random groups (p = {p_text}), but the other classes lose as much "
                              f"({_signed(sel.delta_rest)})",
        "does_not_hold": (f"{drop}; random groups of as many units do as much (p = {p_text})"
                          if (sel.delta_category or 0) < 0 else f"{drop}: silencing them costs the category nothing"),
    }[verdict]
    return Claim(id="important", claim=IMPORTANT, test=test, value=sel.delta_category, control=control,
                 verdict=verdict, reason=reason, evidence_url=evidence)


def _signed(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:+.1f} points"
