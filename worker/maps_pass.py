"""The second pass of a run: the pre-ReLU maps of the images that unit pages show by default.

Once every response is stored, the rankings are known (worker.map_store.maps_todo, the server's
ranking order). The network runs again over the union of those images only, and each needed
(layer, unit, image) map is kept, one transaction per batch: a pass killed midway resumes with
the images it had not stored yet.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from worker.extract import Extractor
from worker.images import Batch
from worker.map_store import Maps, MapsTodo
from worker.store import WorkerStore


@dataclass
class MapCounts:
    """What a second pass did."""

    images: int = 0  # images run through the network
    maps: int = 0  # maps stored
    failed: int = 0  # images that no longer decode: their maps stay missing (null on the page)
    seconds: float = 0.0  # decoding + network + writes


def compute_maps(store: WorkerStore, todo: MapsTodo, batches: Iterable[Batch], extractor: Extractor) -> MapCounts:
    """Run `extractor` over the batches of todo's images (in any order) and store the maps todo asks for."""
    counts = MapCounts()
    started = time.perf_counter()
    bar = tqdm(total=len(todo), unit="img", desc="maps", dynamic_ncols=True, smoothing=0.05, file=sys.stderr)
    with bar:
        for batch in batches:
            counts.failed += len(batch.bad)
            found: list[Maps] = []
            if batch.pixels is not None:
                maps = extractor.maps(batch.pixels)  # layer -> N x units x H' x W'
                found = [Maps(layer, np.array(units), np.full(len(units), item.file_id), maps[layer][b, units].numpy())
                         for b, item in enumerate(batch.good) for layer, units in todo[item.file_id].items()]
            store.write_maps(found)
            counts.images += len(batch.good)
            counts.maps += sum(len(m.units) for m in found)
            bar.update(len(batch.good) + len(batch.bad))
    counts.seconds = time.perf_counter() - started
    return counts
