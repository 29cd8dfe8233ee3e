"""worker.shown_maps: the first pass's heaps against a brute-force sort of every image, ties included."""

from __future__ import annotations

import numpy as np
import torch

from unitscope.maps import SHOWN
from worker.shown_maps import ShownMaps

STAT_INDEX = {"mean": 0, "max": 1, "min": 2}


def test_heaps_keep_each_rankings_first_n_images_in_the_servers_order_with_their_maps() -> None:
    rng = np.random.default_rng(7)
    units, images, n = 5, 37, 4
    stats = rng.integers(-3, 4, size=(images, units, 3)).astype(np.float32)  # few values: many ties
    maps = rng.normal(size=(images, units, 2, 3)).astype(np.float32)
    ids = rng.permutation(1000)[:images]  # ids out of batch order, as in a resumed or sharded run
    shown = ShownMaps({"layer": units}, n=n)
    for lo in range(0, images, 8):  # batches of 8 (the last of 5), the layer in two branches
        batch = slice(lo, lo + 8)
        for first, count in ((0, 2), (2, 3)):
            branch = slice(first, first + count)
            shown.offer("layer", first, torch.from_numpy(stats[batch, branch]), torch.from_numpy(maps[batch, branch]),
                        ids[batch])
    for kind, stat in SHOWN:
        heap = shown._heaps[("layer", kind)]
        for unit in range(units):
            value = stats[:, unit, STAT_INDEX[stat]].tolist()
            key = {"positive": lambda i: -value[i], "negative": lambda i: value[i],
                   "near_zero": lambda i: abs(value[i])}[kind]
            want = sorted(range(images), key=lambda i: (key(i), ids[i]))[:n]  # the server: key, then image id
            assert heap.ids[unit].tolist() == ids[want].tolist(), (kind, unit)
            np.testing.assert_array_equal(heap.maps[unit], maps[want, unit].astype(np.float16))
