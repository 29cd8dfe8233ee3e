"""Response models: the JSON contract of every page's twin, shown in OpenAPI at /docs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.class_profile import ClassSummary


class CategoryInfo(BaseModel):
    """A category of a run and how many of the run's images belong to it."""

    name: str
    images: int


class RunInfo(BaseModel):
    """One complete run of the worker."""

    run_id: int
    model: str
    weights: str
    weights_sha256: str
    preprocessing: str
    device: str
    dtype: str
    images: int = Field(description="images recorded")
    skipped: int = Field(description="files skipped (see /skipped)")
    n_files: int
    started_at: datetime
    finished_at: datetime | None
    categories: list[CategoryInfo]


class LayerInfo(BaseModel):
    """A layer of a run."""

    name: str
    units: int
    position: int
    module: str


class IndexContext(BaseModel):
    """`/`: the complete runs and the selected run's layers."""

    run: RunInfo | None = Field(description="the run shown (the latest, or ?run=)")
    runs: list[RunInfo]
    layers: list[LayerInfo]


class UnitScore(BaseModel):
    """One unit's point of the scatter, with its chance levels and a second selectivity measure."""

    unit: int
    si: float | None = Field(description="selectivity index; null when the unit's response never varies")
    in_top: int = Field(description="category images among the unit's k strongest positive")
    in_bottom: int = Field(description="category images among the unit's k strongest negative")
    selective: bool = Field(description="si >= threshold")
    p_top: float = Field(description="P(in_top this high or higher) under random labels (hypergeometric)")
    p_bottom: float = Field(description="P(in_bottom this high or higher) under random labels (hypergeometric)")
    q_top: float = Field(description="Benjamini-Hochberg q-value of p_top across the layer's units")
    q_bottom: float = Field(description="Benjamini-Hochberg q-value of p_bottom across the layer's units")
    significant_top: bool = Field(description="q_top < 0.05")
    significant_bottom: bool = Field(description="q_bottom < 0.05")
    auroc: float | None = Field(description="AUROC of category against rest on the SI stat (0.5: no preference); "
                                "null when either group has no image")
    si_half_a: float | None = Field(None, description="SI on the even image ids alone (split-half reliability)")
    si_half_b: float | None = Field(None, description="SI on the odd image ids alone")


class Group(BaseModel):
    """The layer-level claim for one group of units: how many, how many reach the base rate at the bottom."""

    units: int
    with_bottom_at_base_rate: int = Field(description="units with in_bottom >= base_rate")
    share_with_bottom_at_base_rate: float | None = Field(description="with_bottom_at_base_rate / units; "
                                                         "null for an empty group")
    median_in_top: float | None = Field(description="null for an empty group")
    median_in_bottom: float | None = Field(description="null for an empty group")


class Groups(BaseModel):
    """The claim for the selective units beside the same numbers for the rest (its control)."""

    selective: Group = Field(description="units with si >= threshold")
    rest: Group = Field(description="every other unit, including those without an SI")


class NullStat(BaseModel):
    """One layer-level statistic against its label-permutation null."""

    name: str = Field(description="'selective', 'selective_negative' or 'median_gap'")
    description: str
    observed: float | None = Field(description="null when undefined (the median gap with an empty group)")
    null_mean: float | None
    null_p95: float | None = Field(description="95th percentile of the null")
    p: float | None = Field(description="(1 + #{null >= observed}) / (valid + 1), upper-tailed")
    valid: int = Field(description="permutations where the statistic is defined")


class NullSummary(BaseModel):
    """The label-permutation null of the layer's claims: labels shuffled (same count), SI and counts redone."""

    permutations: int
    seed: int
    stats: list[NullStat]


class SplitHalf(BaseModel):
    """A layer's SI, computed on each half of the images, and how well the halves agree."""

    stat: str = Field(description="the SI stat")
    images_a: int = Field(description="images with an even id (half a)")
    images_b: int = Field(description="images with an odd id (half b)")
    units: int = Field(description="units whose SI is defined in both halves: the correlations' n")
    spearman: float | None = Field(description="Spearman's rho of si_half_a against si_half_b over the units")
    pearson: float | None = Field(description="Pearson's r of the same")


class ScoreInfo(BaseModel):
    """The parameters a view was computed with and what follows from them."""

    run_id: int
    category: str
    k: int
    pos_stat: str
    neg_stat: str
    si_stat: str
    threshold: float
    n_images: int
    n_category: int
    base_rate: float = Field(description="min(k, n_images) x category share: the null expectation of in_top")
    categories: list[str] = Field(description="the run's categories, the values ?category= takes")
    k_source: str = Field(description="'given' (?k=) or 'default' (chosen from the run's size)")
    k_reason: str = Field(description="how k was chosen, for the page")
    warnings: list[str] = Field(description="what makes these numbers hard to read, e.g. overlapping top and bottom")


class BoxSummary(BaseModel):
    """One group's values of a statistic, as a box plot draws them."""

    n: int
    min: float
    q1: float
    q3: float
    max: float


class LowLevelStat(BaseModel):
    """A unit's category images in its top k against those in its bottom k, on one low-level statistic."""

    name: str = Field(description="a column of image_stats: luminance, contrast, saturation, colourfulness, hf_energy")
    median_positive: float | None = Field(description="median over the category images among the top k")
    median_negative: float | None = Field(description="median over the category images among the bottom k")
    effect_size: float | None = Field(
        description="Cliff's delta, positive group against negative: +1 when every positive image has the higher value"
    )
    p: float | None = Field(
        description="two-sided Mann–Whitney U (normal approximation, tie- and continuity-corrected)"
    )
    positive: BoxSummary | None
    negative: BoxSummary | None


class UnitLowLevel(BaseModel):
    """Is the unit low-level? Its category images compared on the images' low-level statistics."""

    images: int = Field(description="category images")
    positive: int = Field(description="category images among the unit's top k (pos_stat)")
    negative: int = Field(description="category images among the unit's bottom k (neg_stat)")
    stats: list[LowLevelStat]
    r2_cv: float | None = Field(
        description="cross-validated R² (5 folds) of a linear model of the five statistics predicting the unit's "
        "response (si_stat) within the category; null under 20 category images"
    )


class LayerLowLevel(BaseModel):
    """r2_cv over the layer's selective units (si >= threshold): the claims page's `low_level` claim."""

    units: list[int] = Field(description="the selective units with an r2_cv")
    values: list[float] = Field(description="their r2_cv, in the same order")
    r2_cv_median: float | None
    r2_cv_p90: float | None
    threshold: float = Field(description="the claim holds when r2_cv_median is below it")
    verdict: bool | None = Field(
        description="true: 'not explained by low-level statistics' holds (median r2_cv < threshold); "
        "null without selective units"
    )


class LayerContext(ScoreInfo):
    """`/layers/{layer}`: the study's figure 2 for one layer, with its controls."""

    layer: str
    units: list[UnitScore]
    selective: int = Field(description="units with si >= threshold")
    source: str = Field(description="'precomputed' (written by the worker) or 'computed' (on demand)")
    groups: Groups
    null: NullSummary | None = Field(description="the label-permutation null; null when the category or the "
                                     "rest has no image")
    low_level: LayerLowLevel | None = Field(description="null when the run has no image_stats")
    split_half: SplitHalf = Field(description="the units' SI on even against odd image ids")


class LayerSummary(BaseModel):
    """One layer on `/layers`: the study's claim checked layer by layer."""

    name: str
    units: int
    position: int
    selective: int = Field(description="units with si >= threshold")
    selective_bottom: int = Field(description="selective units with in_bottom >= base_rate")
    groups: Groups
    run_id: int
    category: str
    k: int
    k_source: str = Field(description="'given' (?k=) or 'default' (chosen from the run's size)")
    k_reason: str
    threshold: float
    base_rate: float
    categories: list[str] = Field(description="the run's categories, the values ?category= takes")
    warnings: list[str]


class UnitMap(BaseModel):
    """A unit's pre-ReLU map for one image, as stored: float16, printed to 5 significant digits."""

    shape: list[int] = Field(description="[h, w]: rows and columns of the map")
    values: list[float] = Field(description="h x w values, row-major")


class Crop(BaseModel):
    """The centre crop the network saw, as fractions of the image's width (left, width) and height."""

    left: float
    top: float
    width: float
    height: float


class ImageEntry(BaseModel):
    """An image in one of a unit's rankings."""

    image: int = Field(description="image id within the run")
    wnid: str
    class_name: str
    is_category: bool
    value: float
    url: str = Field(description="the full image")
    thumbnail: str
    crop: Crop | None = Field(default=None, description="the network's crop of the image; null when unknown")
    map: UnitMap | None = Field(
        default=None,
        description="the unit's pre-ReLU map over the crop, stretched uniformly; null when not stored "
        "(maps are kept for the first 16 images of each default ranking)",
    )


class Histogram(BaseModel):
    """A unit's responses on one stat, binned server-side: category vs the rest."""

    stat: str
    edges: list[float] = Field(description="bin edges, one more than the counts")
    category: list[int]
    rest: list[int]


class UnitContext(ScoreInfo):
    """`/layers/{layer}/units/{unit}`: the study's figure 1 for one unit."""

    layer: str
    unit: int
    units: int = Field(description="units in the layer")
    n: int
    near_stat: str
    si: float | None
    in_top: int
    in_bottom: int
    selective: bool
    si_half_a: float | None = Field(description="SI on the even image ids alone (split-half reliability)")
    si_half_b: float | None = Field(description="SI on the odd image ids alone")
    positive: list[ImageEntry]
    near_zero: list[ImageEntry]
    negative: list[ImageEntry]
    histogram: Histogram
    classes: ClassSummary = Field(description="the unit's class profile on si_stat, in brief")
    map_scale: float | None = Field(
        default=None, description="max |value| over the page's maps: the overlays' colour scale is ±map_scale"
    )
    low_level: UnitLowLevel | None = Field(description="null when the run has no image_stats")
    prev_unit: int | None
    next_unit: int | None


class SkippedFile(BaseModel):
    """A file the worker could not use."""

    file_id: int
    path: str
    reason: str


class SkippedContext(BaseModel):
    """`/skipped`: the files the worker skipped, and why."""

    run_id: int | None
    count: int
    files: list[SkippedFile]


class Health(BaseModel):
    """`/healthz`: the database can be opened."""

    status: str
    runs: int = Field(description="complete runs in the database")
    schema_version: int
