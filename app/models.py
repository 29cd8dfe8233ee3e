"""Response models: the JSON contract of every page's twin, shown in OpenAPI at /docs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


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
    """One unit's point of the scatter."""

    unit: int
    si: float | None = Field(description="selectivity index; null when the unit's response never varies")
    in_top: int = Field(description="category images among the unit's k strongest positive")
    in_bottom: int = Field(description="category images among the unit's k strongest negative")
    selective: bool = Field(description="si >= threshold")
    si_half_a: float | None = Field(None, description="SI on the even image ids alone (split-half reliability)")
    si_half_b: float | None = Field(None, description="SI on the odd image ids alone")


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


class LayerContext(ScoreInfo):
    """`/layers/{layer}`: the study's figure 2 for one layer."""

    layer: str
    units: list[UnitScore]
    selective: int = Field(description="units with si >= threshold")
    source: str = Field(description="'precomputed' (written by the worker) or 'computed' (on demand)")
    split_half: SplitHalf = Field(description="the units' SI on even against odd image ids")


class LayerSummary(BaseModel):
    """One layer on `/layers`: the study's claim checked layer by layer."""

    name: str
    units: int
    position: int
    selective: int = Field(description="units with si >= threshold")
    selective_bottom: int = Field(description="selective units with in_bottom >= base_rate")
    run_id: int
    category: str
    k: int
    threshold: float
    base_rate: float
    categories: list[str] = Field(description="the run's categories, the values ?category= takes")


class ImageEntry(BaseModel):
    """An image in one of a unit's rankings."""

    image: int = Field(description="image id within the run")
    wnid: str
    class_name: str
    is_category: bool
    value: float
    url: str = Field(description="the full image")
    thumbnail: str


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
