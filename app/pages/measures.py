"""The layer page's selectivity measures and tuning shapes: per unit (UnitMeasures, fields of each unit row) and per
layer (how the measures agree; the units' tuning shape beside the published IT values)."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field

from unitscope import selectivity
from unitscope.data.measures import TUNING, Agreement, Measures, agreement


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


class UnitMeasures(BaseModel):
    """A unit's other selectivity measures and its tuning shape, on the SI stat (docs/claims.md)."""

    d_prime: float | None = Field(None, description="(mean_C - mean_rest) / sqrt((var_C + var_rest) / 2)")
    csi: float | None = Field(None, description="Morcos et al. (2018)'s class selectivity index on post-ReLU class "
                              "means (classes of 5 or more images)")
    csi_class: str | None = Field(None, description="WNID of the class with the highest post-ReLU mean")
    beats_every_class: bool | None = Field(None, description="Baek et al. (2021): the category beats every other "
                                           "class of 5 or more images in a one-sided rank-sum test at p < 0.001; "
                                           "null when it cannot be tested")
    sparseness: float | None = Field(None, description="Rolls-Tovee (mean r)^2 / mean(r^2) of r = max(response, 0)")
    kurtosis: float | None = Field(None, description="excess kurtosis of max(response, 0)")
    half_peak_share: float | None = Field(None, description="share of images with max(response, 0) above half its peak")
    sparseness_pre: float | None = Field(None, description="sparseness of response - min(response)")
    kurtosis_pre: float | None = Field(None, description="excess kurtosis of the pre-ReLU response")
    half_peak_share_pre: float | None = Field(None, description="share of images with response - min above half "
                                              "its peak")


def unit_fields(m: Measures) -> list[dict[str, object]]:
    """UnitMeasures' fields of every unit, in unit order."""
    beats = [None if math.isnan(b) else bool(b) for b in m.beats_every_class.tolist()]
    tuning = {name: [_finite(v) for v in m.tuning[name].tolist()] for name in TUNING}
    return [
        {"d_prime": _finite(d), "csi": _finite(c), "csi_class": w, "beats_every_class": b,
         **{name: tuning[name][i] for name in TUNING}}
        for i, (d, c, w, b) in enumerate(zip(m.d_prime.tolist(), m.csi.tolist(), m.csi_wnid, beats))
    ]


class MeasureSummary(BaseModel):
    """One selectivity measure over the layer's units."""

    name: str = Field(description="si, auroc, d_prime, csi or beats_every_class")
    rule: str = Field(description="when the measure calls a unit selective")
    selective: int = Field(description="units the measure calls selective")
    also_si: int = Field(description="of those, units SI calls selective too")
    spearman: dict[str, float | None] = Field(description="Spearman's rho with each continuous measure over the "
                                              "units where both are defined; null for beats_every_class")


class Reference(BaseModel):
    """A published value of a tuning statistic, or the value of a reference distribution."""

    value: float
    spread: str | None = Field(None, description="as the source reports it")
    source: str


class TuningRow(BaseModel):
    """One tuning statistic: the medians over the layer's selective units and the rest, beside published values."""

    statistic: str = Field(description="sparseness, kurtosis or half_peak_share")
    selective_post: float | None = Field(description="median over the selective units, post-ReLU")
    rest_post: float | None
    selective_pre: float | None = Field(description="median over the selective units, pre-ReLU")
    rest_pre: float | None
    references: list[Reference]


class LayerMeasures(BaseModel):
    """The field's selectivity measures side by side, and the shape of the units' tuning against IT's."""

    stat: str = Field(description="the stat every measure is computed on (the SI stat)")
    measures: list[MeasureSummary]
    tuning: list[TuningRow]


def _median(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else None


def _summaries(found: Agreement) -> list[MeasureSummary]:
    return [MeasureSummary(name=name, rule=rule, selective=n, also_si=both,
                           spearman={other: rho for other, rho in zip(found.names, row) if other != name})
            for name, rule, n, both, row in zip(found.names, found.rules, found.selective, found.both_with_si,
                                                found.spearman)]


def for_layer(si: np.ndarray, auroc: np.ndarray, m: Measures, threshold: float, stat: str) -> LayerMeasures:
    """The layer's summary; si and auroc per unit in unit order, NaN where undefined."""
    with np.errstate(invalid="ignore"):
        chosen = si >= threshold
    rows = []
    for statistic in ("sparseness", "kurtosis", "half_peak_share"):
        post, pre = m.tuning[statistic], m.tuning[f"{statistic}_pre"]
        rows.append(TuningRow(
            statistic=statistic, selective_post=_median(post[chosen]), rest_post=_median(post[~chosen]),
            selective_pre=_median(pre[chosen]), rest_pre=_median(pre[~chosen]),
            references=[Reference(value=r.value, spread=r.spread, source=r.source)
                        for r in selectivity.IT_REFERENCE if r.statistic == statistic],
        ))
    return LayerMeasures(stat=stat, measures=_summaries(agreement(si, auroc, m, threshold)), tuning=rows)
