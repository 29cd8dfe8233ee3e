"""Split-half reliability of SI: each unit's SI on the even and on the odd image ids (stored by publication, else
computed from the layer's responses), for the layer and unit pages and the Python API."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unitscope import schema, stats
from unitscope.data.runs import Run, require_category
from unitscope.data.scores import (
    category_labels,
    layer_matrix,
    stored_unit_column,
    whole_layer,
)
from unitscope.data.source import Source, stored_or_computed

SiByUnit = dict[int, float | None]


@dataclass(frozen=True)
class Halves:
    """Per unit SI of each half of the images (even and odd ids), and each half's images."""

    si_a: SiByUnit
    si_b: SiByUnit
    images_a: int
    images_b: int


def _by_unit(si: np.ndarray) -> SiByUnit:
    return {u: None if math.isnan(v) else v for u, v in enumerate(si.tolist())}


def _stored_halves(reader: Source, run: Run, layer: str, category: str, stat: str) -> tuple[SiByUnit, SiByUnit] | None:
    a, b = (stored_unit_column(reader, run, layer, category, stat, c) for c in ("si_half_a", "si_half_b"))
    return None if a is None or b is None else (_by_unit(a), _by_unit(b))


def _computed_halves(reader: Source, run: Run, layer: str, category: str, stat: str) -> tuple[SiByUnit, SiByUnit]:
    image_ids, labels = category_labels(reader, run, category)
    a, b = stats.split_half_si(layer_matrix(reader, run, layer, stat), [labels], image_ids)[0]
    return _by_unit(a), _by_unit(b)


def unit_halves(reader: Source, run: Run, layer: str, category: str, stat: str) -> Halves:
    """Each unit's SI on the even and on the odd image ids, each half min-max normalised over its own
    images as if it were the whole run (unitscope.stats.split_half_si)."""
    require_category(run, category)

    def read() -> Halves:
        si_a, si_b = stored_or_computed(lambda: _stored_halves(reader, run, layer, category, stat),
                                        lambda: whole_layer(reader, run, layer, lambda: _computed_halves(
                                            reader, run, layer, category, stat)))[0]
        [(images_a, images_b)] = reader.rows(
            f"""SELECT count(*) FILTER (WHERE image_id % 2 = 0), count(*) FILTER (WHERE image_id % 2 = 1)
                FROM {schema.IMAGES} WHERE run_id = $run_id""",
            {"run_id": run.run_id},
        )
        return Halves(si_a, si_b, images_a, images_b)

    return reader.cached((run.run_id, layer, category, "split_half", stat), read)
