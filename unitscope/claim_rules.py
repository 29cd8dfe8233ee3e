"""Every decision rule and threshold behind the claims and the pages' flags, in one place.

The statistics (unitscope.stats, unitscope.nulls) give numbers; these rules turn them into
"selective", "significant", a default k or layer, and each claim's verdict. The claims page
(app/pages/claims.py) words the verdicts; docs/claims.md gives each rule's source.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Final, Literal, NamedTuple

import numpy as np

Verdict = Literal["holds", "holds_not_specific", "does_not_hold", "cannot_tell"]

# Selectivity: SI >= threshold. The study's figure marks SI >= 0.7 (the pages' default); Aparicio
# et al. (2016) use 0.65. Publication stores the null at both.
FIGURE_SI: Final = 0.7
K_MAX: Final = 10_000  # the largest k of a view (the study: 1000 of 286k); the server's 422 and the API's ValueError
SELECTIVE_SI: Final = 0.65
FDR: Final = 0.05  # a unit's in_top/in_bottom is significant at BH q < FDR across the layer's units
ALPHA: Final = 0.05  # a permutation p below this rejects chance
MAJORITY: Final = 0.5  # "most selective units": more than this share of them
TAIL: Final = 0.10  # the rest's lower and upper deciles bound "far below" and "far above"
MIN_CATEGORY: Final = 20  # fewer category images than this: too few to tell
# A class with fewer images is flagged, and left out of the class-profile rule: its mean rests on too few
# responses to rank it by (for unit 447 on 1,500 shared images, 19 of the 22 classes "above the dogs' median
# class" had a single image).
FEW_IMAGES: Final = 5
MIN_PAIRS: Final = 3  # below this a correlation says nothing
# The claim "not explained by low-level statistics" holds when the median selective unit's r2_cv is
# below 0.1: the five statistics predict under a tenth of its within-category variance, less than
# Cohen's (1988) "medium" effect for a regression (R² = 0.13).
R2_THRESHOLD: Final = 0.1
R2_FOLDS: Final = 5
R2_SEED: Final = 0  # the folds are a fixed permutation, so r2_cv is reproducible
# Fewer category images than this and r2_cv is null: each training fold must hold many more images
# than the model's 6 coefficients.
MIN_R2_IMAGES: Final = 20
# Every reasonable specification a claim is tested under, besides the request's own: a claim is robust
# when its verdict is the same in all of them (k stays the request's). Publication stores the layer's
# null for every (si_stat, neg_stat) and threshold of the grid, so the claims page reads, not computes, it.
GRID_POS_STATS: Final = ("max", "mean")
GRID_NEG_STATS: Final = ("min", "mean")
GRID_SI_STATS: Final = ("max", "mean")
GRID_THRESHOLDS: Final = (SELECTIVE_SI, FIGURE_SI)
# A unit page warns when at least this share of a unit's bottom k are also among its top k: its two
# rows then largely show the same images, excited in one place and inhibited in another.
OVERLAP_WARN_SHARE: Final = 0.25
# The field's other selectivity measures, each with the cut-off its own literature uses to call a unit selective
# (docs/claims.md). d' >= 1: the category's mean a pooled standard deviation above the rest's. AUROC at the
# same separation for two equal-variance normal distributions, Phi(1 / sqrt 2) = 0.760, so the two cut-offs
# agree where the responses are Gaussian. CSI >= 1/3: the preferred class's mean twice the other classes'
# (Tsao et al. 2006's face-selectivity cut-off, the same ratio), with a category class preferred. Baek et al.
# (2021): the category beats every other class in a one-sided rank-sum test at p < 0.001.
D_PRIME_SELECTIVE: Final = 1.0
AUROC_SELECTIVE: Final = 0.7602499389065233  # scipy.stats.norm.cdf(1 / sqrt(2))
CSI_SELECTIVE: Final = 1 / 3
BAEK_ALPHA: Final = 0.001
# The random-basis control (Bau et al. 2017, who count interpretable units against interpretable directions of
# a random rotation): the units are "axis aligned" when more of them are selective than of the directions of the
# layer's random orthonormal bases (one-sided Fisher exact test, p < ALPHA). A rotation mixes channels, which
# narrows the SI distribution: the directions' median SI can exceed the units' while few are selective, so
# the test is on the upper tail, the selective share, and the whole distributions are shown beside it.
# The study's layer, mixed4c, sits at 7/11 of GoogLeNet's depth: by default the claims are tested on
# the deepest layer of the run at or below this relative depth, whatever the network.
DEFAULT_DEPTH: Final = 2 / 3


def selective(si: float | None, threshold: float) -> bool:
    """A unit is selective at si >= threshold; one without an SI is not."""
    return si is not None and si >= threshold


def default_k(n_images: int, study_k: int = 1000) -> tuple[int, str]:
    """A k whose top and bottom sets stay well apart, and why: (k, reason for the page).

    The study's k when there are at least 6 * study_k images (k is then at most a sixth of them,
    as 1000 is of the 6,308 shared photos); otherwise a sixth of the images, at least 1.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    if n_images >= 6 * study_k:
        return study_k, f"k = {study_k}, the study's"
    k = max(1, n_images // 6)
    return k, (f"k = {k}, a sixth of the {n_images:,} images: the study's {study_k} needs at least "
               f"{6 * study_k:,} images to stay a sixth of them or less")


def overlap_warning(k: int, n_images: int) -> str | None:
    """A warning when a unit's top k and bottom k must share images (2k > n), else None.

    A k past the images ranks them all (min(k, n), as base_rate and the counts do).
    """
    depth = min(k, n_images)
    if 2 * depth <= n_images:
        return None
    if k >= n_images:
        return (f"k = {k} is at least the {n_images:,} images: each unit's top and bottom k are all of them, so "
                f"in_top and in_bottom count the same images, and say nothing about two-sided tuning")
    return (f"k = {k} is more than half of the {n_images:,} images: each unit's top and bottom {k} share "
            f"at least {2 * k - n_images:,} images, so in_top and in_bottom partly count the same images, "
            f"and a category image counted in both says nothing about two-sided tuning")


def base_rate(k: int, n_images: int, n_category: int) -> float:
    """The expected in_top/in_bottom of a unit blind to the category: min(k, N) x category share."""
    if n_images == 0:
        return 0.0
    return min(k, n_images) * n_category / n_images


def enriched_exclusively(exclusive_q: float) -> bool:
    """The exclusive test of a unit: the images of its bottom k that are not in its top k (inhibiting it without
    exciting it) hold more of the category than as many images drawn at random from outside its top k would
    (unitscope.stats.exclusive_p, Benjamini-Hochberg across the layer's units: q < FDR). A centre-surround unit,
    whose strongest negatives are its strongest positives, has few such images or none, and does not pass."""
    return exclusive_q < FDR


def relative_depth(layer: str, order: Sequence[str]) -> float:
    """i / (layers - 1) of `layer` in `order` (a network's layers, in depth order), so that networks of any depth share
    one axis; 0 for a lone layer."""
    return list(order).index(layer) / (len(order) - 1) if len(order) > 1 else 0.0


def default_layer(layers: Sequence[str], network: Sequence[str] | None = None) -> tuple[str, str]:
    """The recorded layer at the study's relative depth (the deepest at or below DEFAULT_DEPTH), and why.

    network: every layer of the model in depth order, when known (the worker knows it), so that a run recording
    only some layers (conv1 and mixed4c) still picks mixed4c; without it, depth is counted among `layers`. When
    every recorded layer lies deeper, the shallowest of them.
    """
    recorded = list(layers)
    order = list(network) if network is not None else recorded
    depth = {name: relative_depth(name, order) for name in recorded}
    within = [name for name in recorded if depth[name] <= DEFAULT_DEPTH]
    among = "the network" if network is not None else f"the {len(recorded)} recorded layers"
    if not within:
        chosen = min(recorded, key=depth.__getitem__)
        return chosen, (f"{chosen}, the shallowest recorded layer ({depth[chosen]:.2f} of the way through {among}): "
                        "none lies at most 2/3 of the way, where mixed4c is in GoogLeNet")
    chosen = max(within, key=depth.__getitem__)
    return chosen, (f"{chosen}, the deepest layer at most 2/3 of the way through {among} ({depth[chosen]:.2f}), "
                    "as mixed4c is in GoogLeNet")


class ClassRow(NamedTuple):
    """One class of a unit's class profile (unitscope.unit_summary.class_profiles)."""

    key: Hashable  # the class key as given, e.g. a WNID
    n: int  # its images
    mean: float  # of the unit's responses to them
    median: float
    is_category: bool
    few_images: bool  # n < FEW_IMAGES: its mean rests on too few images to rank it by


def category_median(profile: list[ClassRow]) -> float | None:
    """The category's median class: the median, over the category's classes of FEW_IMAGES or more, of their means.

    Each class counts once, whatever its size. None when no such class is in the category.
    """
    category_means = [row.mean for row in profile if row.is_category and not row.few_images]
    return float(np.median(category_means)) if category_means else None


def beats_category_median(profile: list[ClassRow]) -> list[Hashable]:
    """Non-category classes of FEW_IMAGES or more whose mean exceeds the category's median class, in profile order.

    Empty when the category has no such class.
    """
    median = category_median(profile)
    if median is None:
        return []
    return [row.key for row in profile if not row.is_category and not row.few_images and row.mean > median]


def robust(verdict: Verdict, cells: Sequence[Verdict]) -> bool:
    """A claim is robust when every specification of the grid gives the verdict of the one asked for, and that verdict
    is one: a grid that cannot tell anywhere is untested, not robust."""
    return verdict != "cannot_tell" and all(cell == verdict for cell in cells)


def selective_verdict(p: float | None, selective_units: int) -> Verdict:
    """`selective`: more selective units than random labels give (permutation p < ALPHA). SI and its null use no k,
    so a k whose top and bottom sets overlap leaves this verdict as it is."""
    if p is None:
        return "cannot_tell"
    return "holds" if p < ALPHA and selective_units > 0 else "does_not_hold"


def negative_verdict(share: float | None, gap_p: float | None, warned: bool) -> Verdict:
    """`negative`: most selective units pass the exclusive test (share), and the category's share of their bottom-only
    images is above the rest's by more than random groups of as many units give (gap_p < ALPHA)."""
    if share is None or gap_p is None or warned:
        return "cannot_tell"
    if share <= MAJORITY:
        return "does_not_hold"
    return "holds" if gap_p < ALPHA else "holds_not_specific"


def two_sided_verdict(median_below: float | None, p_vs_rest: float | None, n_category: int) -> Verdict:
    """`two_sided`: the selective units' median share of their category below the rest's lower decile is above a
    blind unit's TAIL, and above the other units' (one-sided rank test over units, p < ALPHA)."""
    if median_below is None or p_vs_rest is None or n_category < MIN_CATEGORY:
        return "cannot_tell"
    if median_below <= TAIL:
        return "does_not_hold"
    return "holds" if p_vs_rest < ALPHA else "holds_not_specific"


def other_classes_verdict(share: float | None, category_classes: int) -> Verdict:
    """`other_classes`: for most selective units, some other class beats the category's median class."""
    if share is None or category_classes < 2:
        return "cannot_tell"
    return "holds" if share > MAJORITY else "does_not_hold"


def axis_aligned_verdict(p: float | None) -> Verdict:
    """`axis_aligned`: a layer's units are selective more often than the directions of its random bases (one-sided
    Fisher exact p < ALPHA)."""
    if p is None:
        return "cannot_tell"
    return "holds" if p < ALPHA else "does_not_hold"


def low_level_verdict(r2_cv_median: float | None) -> Verdict:
    """`low_level`: the median selective unit's r2_cv is below R2_THRESHOLD."""
    if r2_cv_median is None:
        return "cannot_tell"
    return "holds" if r2_cv_median < R2_THRESHOLD else "does_not_hold"


def negative_stimulus_verdict(p_vs_control: float | None, smallest_p: float | None) -> Verdict:
    """`negative_stimulus`: the images optimised to drive the selective units down carry more of the category in
    the network's own reading than the control units' do (one-sided Mann–Whitney over units, p < ALPHA).

    smallest_p: the test's p when every selective unit reads above every control, without ties (ties can give a
    smaller one). When it is at or above ALPHA no outcome of these group sizes could hold, so a p at or above ALPHA
    says nothing (cannot_tell), as with important_verdict's MIN_RANDOM_GROUPS."""
    if p_vs_control is None:
        return "cannot_tell"
    if p_vs_control < ALPHA:
        return "holds"
    return "cannot_tell" if smallest_p is None or smallest_p >= ALPHA else "does_not_hold"


# The fewest random groups whose permutation p can fall below ALPHA: p >= 1 / (1 + groups).
MIN_RANDOM_GROUPS: Final = math.ceil(1 / ALPHA) - 1


def important_verdict(p_vs_random: float | None, delta_category: float | None, delta_rest: float | None,
                      random_groups: int) -> Verdict:
    """`important`: ablating the selective units lowers top-1 accuracy on the category (delta < 0) more than random
    groups of as many units do (permutation p < ALPHA over at least MIN_RANDOM_GROUPS groups), and more than on the
    other classes (else not specific)."""
    if p_vs_random is None or delta_category is None or delta_rest is None or random_groups < MIN_RANDOM_GROUPS:
        return "cannot_tell"
    if p_vs_random >= ALPHA or delta_category >= 0:
        return "does_not_hold"
    return "holds" if delta_category < delta_rest else "holds_not_specific"

