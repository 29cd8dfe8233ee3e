"""Layer-level shares by relative depth: selective units, and in_bottom >= base rate among them and the rest."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app import layer_controls, queries
from app.contexts import base_rate, resolve_k
from app.db import Reader
from app.params import ScoreParams


class LayerShares(BaseModel):
    """One layer of a run under one category: how many units are selective, and how two-sided."""

    layer: str
    position: int = Field(description="the model's own depth index of the layer")
    depth: float = Field(description="relative depth, 0 (first layer of the run) to 1 (last): i / (layers - 1)")
    units: int
    selective: int = Field(description="units with si >= threshold")
    selective_bottom: int = Field(description="selective units with in_bottom >= base rate")
    rest_bottom: int = Field(description="the other units (si < threshold or undefined) with in_bottom >= base rate")
    share_selective: float = Field(description="selective / units")
    share_selective_bottom: float | None = Field(description="selective_bottom / selective; null without one")
    share_rest_bottom: float | None = Field(description="rest_bottom / (units - selective); null without one")


def relative_depth(index: int, layers: int) -> float:
    """index / (layers - 1), so the layers of networks of any depth share one axis; 0 for a lone layer."""
    return index / (layers - 1) if layers > 1 else 0.0


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def layer_shares(reader: Reader, run: queries.Run, p: ScoreParams) -> list[LayerShares]:
    """Every layer of the run, in depth order, scored with the parameters (p.run is not read)."""
    k = resolve_k(p, run.images)[0]
    rate = base_rate(k, run.images, queries.require_category(run, p.category))
    result = []
    for index, (name, (units, position, _)) in enumerate(run.layers.items()):
        groups = layer_controls.groups(queries.layer_scores(reader, run, name, p, k).rows, p.threshold, rate)
        selective, selective_bottom = groups.selective.units, groups.selective.with_bottom_at_base_rate
        rest_bottom = groups.rest.with_bottom_at_base_rate
        result.append(LayerShares(
            layer=name, position=position, depth=relative_depth(index, len(run.layers)), units=units,
            selective=selective, selective_bottom=selective_bottom, rest_bottom=rest_bottom,
            share_selective=selective / units, share_selective_bottom=_share(selective_bottom, selective),
            share_rest_bottom=_share(rest_bottom, units - selective),
        ))
    return result
