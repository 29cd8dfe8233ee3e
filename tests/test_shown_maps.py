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


class _Store:
    """What store_known writes to: the maps of each write_maps call."""

    def __init__(self) -> None:
        self.written: list = []

    def write_maps(self, maps: list) -> None:
        self.written.extend(maps)


def test_store_known_stores_the_kept_maps_and_leaves_the_rest_for_the_second_pass(monkeypatch) -> None:
    monkeypatch.setattr("worker.shown_maps._ROWS_PER_WRITE", 3)  # several writes for one layer
    rng = np.random.default_rng(11)
    units, images, n = 4, 20, 3
    stats = rng.normal(size=(images, units, 3)).astype(np.float32)
    maps = rng.normal(size=(images, units, 2, 2)).astype(np.float32)
    ids = np.arange(100, 100 + images)
    shown = ShownMaps({"a": units, "b": 2}, n=n)
    shown.offer("a", 0, torch.from_numpy(stats), torch.from_numpy(maps), ids)
    kept = {(unit, int(i)) for (layer, _), heap in shown._heaps.items() if layer == "a"
            for unit in range(units) for i in heap.ids[unit]}
    # Every pair of layer a (kept or not), a pair of an image this process never saw, and layer b, never offered.
    todo = {int(i): {"a": list(range(units))} for i in ids}
    todo[999] = {"a": [1]}
    todo[100]["b"] = [0, 1]
    store = _Store()
    left, stored = shown.store_known(store, todo)
    got = {(layer, int(u), int(i)): m for block in store.written
           for layer, u, i, m in zip([block.layer] * len(block.units), block.units, block.image_ids, block.values)}
    assert stored == len(got) == len(kept) and len(store.written) == -(-len(kept) // 3)
    assert set(got) == {("a", unit, i) for unit, i in kept}
    for (_, unit, i), values in got.items():
        np.testing.assert_array_equal(values, maps[i - 100, unit].astype(np.float16))
    expected: dict[int, dict[str, list[int]]] = {}
    for i, layers in todo.items():
        for layer, wanted in layers.items():
            for unit in wanted:
                if layer != "a" or (unit, i) not in kept:
                    expected.setdefault(i, {}).setdefault(layer, []).append(unit)
    assert left == expected and left[999] == {"a": [1]} and left[100]["b"] == [0, 1]
