"""The maps of the images unit pages show, kept while the first pass runs, so that the network need not run again.

For every unit and each ranking of unitscope.maps.SHOWN, a bounded heap of the best MAP_N images seen so far, in
the server's ranking order (the ranking's key, then the smaller image id), with their pre-ReLU maps in float16,
the precision unit_maps stores. Once the first pass is over they hold, for the images this process ran, exactly
the images each ranking shows. The maps a run still needs (worker.map_store.maps_todo, the authority) are taken
from them, and only the rest go through the second pass: the images of a resumed run's earlier sessions, or of
other torchrun ranks. Memory: units x 3 rankings x MAP_N maps, about 270 MB for GoogLeNet's 12 layers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from unitscope import schema
from unitscope.maps import MAP_DTYPE, SHOWN
from worker.map_store import Maps, MapsTodo
from worker.store import WorkerStore

# Each ranking's key, smaller first.
_KEY = {"positive": np.negative, "negative": np.positive, "near_zero": np.abs}
_ROWS_PER_WRITE = 20_000  # maps per transaction when they are stored


_EMPTY = np.iinfo(np.int64).max  # the id of a slot not filled yet (its key is +inf: any image beats it)


class _Heap:
    """One ranking of one layer: per unit, n slots of (key, image id, map), best first."""

    def __init__(self, units: int, n: int) -> None:
        self.keys = np.full((units, n), np.inf, dtype=np.float32)
        self.ids = np.full((units, n), _EMPTY, dtype=np.int64)
        self.maps: np.ndarray | None = None  # units x n x H x W, float16, allocated at the first batch

    def offer(self, first: int, keys: np.ndarray, ids: np.ndarray, output: Tensor) -> None:
        """Merge a batch's keys [B, C] of units first..first+C (their maps: output [B, C, H, W]) into the heap."""
        b, c = keys.shape
        n = self.keys.shape[1]
        if self.maps is None:
            self.maps = np.zeros((len(self.keys), n, *output.shape[2:]), dtype=MAP_DTYPE)
        # Only the units where an image of the batch can enter: a key at or below the worst kept (equal keys are
        # decided by the ids); late batches touch few units.
        touched = np.flatnonzero((keys.T <= self.keys[first : first + c, -1:]).any(axis=1))
        if len(touched) == 0:
            return
        rows = first + touched
        all_keys = np.concatenate([self.keys[rows], keys.T[touched]], axis=1)
        all_ids = np.concatenate([self.ids[rows], np.broadcast_to(ids, (len(touched), b))], axis=1)
        order = np.lexsort((all_ids, all_keys), axis=-1)[:, :n]  # the key first, then the smaller id
        new_maps = np.empty((len(touched), n, *self.maps.shape[2:]), dtype=MAP_DTYPE)
        from_heap = order < n
        r, j = np.nonzero(from_heap)
        new_maps[r, j] = self.maps[rows[r], order[r, j]]
        r, j = np.nonzero(~from_heap)
        if len(r):
            index = (torch.as_tensor(order[r, j] - n, device=output.device),
                     torch.as_tensor(touched[r], device=output.device))
            new_maps[r, j] = output[index].to(torch.float16).cpu().numpy()
        self.keys[rows] = np.take_along_axis(all_keys, order, axis=1)
        self.ids[rows] = np.take_along_axis(all_ids, order, axis=1)
        self.maps[rows] = new_maps


class ShownMaps:
    """The heaps of every ranking of every layer (layer name -> its units)."""

    def __init__(self, units: Mapping[str, int], n: int = schema.MAP_N) -> None:
        self._heaps = {(layer, kind): _Heap(count, n) for layer, count in units.items() for kind, _ in SHOWN}

    def offer(self, layer: str, first: int, stats: Tensor, output: Tensor, ids: np.ndarray) -> None:
        """A batch's branch of `layer`: units first.. with stats [B, C, 3] and pre-ReLU maps output [B, C, H, W]."""
        values = stats.detach().float().cpu().numpy()
        for kind, stat in SHOWN:
            keys = _KEY[kind](values[:, :, schema.STATS.index(stat)]).astype(np.float32)
            self._heaps[(layer, kind)].offer(first, keys, ids, output)

    def store_known(self, store: WorkerStore, todo: MapsTodo) -> tuple[MapsTodo, int]:
        """Store the maps of `todo` that the heaps hold; returns what is left for the second pass and how many
        were stored."""
        wanted: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for image_id, layers in todo.items():
            for layer, units in layers.items():
                unit_parts, id_parts = wanted.setdefault(layer, ([], []))
                unit_parts.append(np.asarray(units, dtype=np.int64))
                id_parts.append(np.full(len(units), image_id, dtype=np.int64))
        left: MapsTodo = {}
        stored = 0
        for layer, (unit_parts, id_parts) in wanted.items():
            units, ids = np.concatenate(unit_parts), np.concatenate(id_parts)
            pairs = _pair(units, ids)
            keys, heap_of, slot_of = self._kept(layer)
            at = np.searchsorted(keys, pairs)
            hit = at < len(keys)
            hit[hit] = keys[at[hit]] == pairs[hit]
            hits = np.flatnonzero(hit)
            for part in (hits[start : start + _ROWS_PER_WRITE] for start in range(0, len(hits), _ROWS_PER_WRITE)):
                maps = self._gather(layer, heap_of[at[part]], slot_of[at[part]])
                store.write_maps([Maps(layer, units[part], ids[part], maps)])
            stored += len(hits)
            for unit, image_id in zip(units[~hit].tolist(), ids[~hit].tolist()):
                left.setdefault(image_id, {}).setdefault(layer, []).append(unit)
        return left, stored

    def _layer_heaps(self, layer: str) -> list[_Heap]:
        """The heaps of layer's rankings, in SHOWN order; none for a layer this process did not record."""
        return [self._heaps[(layer, kind)] for kind, _ in SHOWN if (layer, kind) in self._heaps]

    def _kept(self, layer: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (unit, image id) pairs that layer's heaps hold, sorted (_pair), with the heap (in SHOWN order) and
        the flat slot of each; a pair that several rankings hold once (its map is the same in each)."""
        empty = np.empty(0, dtype=np.int64)
        pairs, heap_of, slot_of = [empty], [empty], [empty]
        for h, heap in enumerate(self._layer_heaps(layer)):
            unit, slot = np.nonzero(heap.ids != _EMPTY)
            pairs.append(_pair(unit, heap.ids[unit, slot]))
            heap_of.append(np.full(len(unit), h))
            slot_of.append(unit * heap.ids.shape[1] + slot)
        keys, first = np.unique(np.concatenate(pairs), return_index=True)
        return keys, np.concatenate(heap_of)[first], np.concatenate(slot_of)[first]

    def _gather(self, layer: str, heap_of: np.ndarray, slot_of: np.ndarray) -> np.ndarray:
        """The maps at the heaps' flat slots (_kept's), float16: (m, height, width)."""
        heaps = self._layer_heaps(layer)
        shape = next(heap.maps.shape[2:] for heap in heaps if heap.maps is not None)
        out = np.empty((len(slot_of), *shape), dtype=MAP_DTYPE)
        for h, heap in enumerate(heaps):
            mine = heap_of == h
            if mine.any():
                out[mine] = heap.maps.reshape(-1, *shape)[slot_of[mine]]
        return out


def _pair(units: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
    """(unit, image id) pairs as one sortable int64 each: the unit in the high 32 bits."""
    return (units.astype(np.int64) << 32) | image_ids.astype(np.int64)
