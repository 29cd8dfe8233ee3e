"""The unit page's overlays: each shown image's stored map of the unit and the crop the network saw.

The server never computes a map (it has no torch): the worker's second pass stored them
(worker.map_store), and this module only decodes them and aligns them. The page stretches a
map's h x w cells uniformly over the crop square, cell (i, j) over rows i/h..(i+1)/h and columns
j/w..(j+1)/w of it, and colours them on one scale per unit, ±map_scale: the largest |value| over
the page's maps, so red (fires) and blue (inhibited) compare across the three rankings.
"""

from __future__ import annotations

from collections.abc import Iterable

from app import queries
from app.db import Reader
from app.models import Crop, UnitMap
from worker.map_store import decode
from worker.network_crop import network_crop


def _printed(value: float) -> float:
    # 5 significant digits identify a float16 exactly and keep the JSON short.
    return float(f"{value:.5g}")


def unit_map(height: int, width: int, blob: bytes) -> UnitMap:
    """A stored map as the JSON twin gives it."""
    values = decode(blob, height, width)
    return UnitMap(shape=[height, width], values=[_printed(v) for v in values.ravel().tolist()])


def map_scale(maps: Iterable[UnitMap]) -> float | None:
    """max |value| over the maps (None without maps, or when every value is 0)."""
    scale = max((abs(v) for m in maps for v in m.values), default=0.0)
    return scale or None


def overlays(
    reader: Reader, run: queries.Run, layer: str, unit: int, image_ids: list[int]
) -> tuple[dict[int, Crop], dict[int, UnitMap]]:
    """The network's crop of each image (when the run's preprocessing says it) and the unit's stored maps."""
    crops = {}
    for image_id, (width, height) in queries.image_sizes(reader, run, image_ids).items():
        box = network_crop(run.preprocessing, width, height)
        if box is not None:
            crops[image_id] = Crop(left=box.left, top=box.top, width=box.width, height=box.height)
    maps = {
        image_id: unit_map(h, w, blob)
        for image_id, (h, w, blob) in queries.unit_maps(reader, run, layer, unit, image_ids).items()
    }
    return crops, maps
