"""Publication's threads: a chunk of a layer's units split in one block of columns per core."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# Threads for a chunk's per-unit work: numpy and scipy release the GIL in the sorts and products that cost most.
WORKERS = len(os.sched_getaffinity(0))


def in_blocks(work: Callable[..., T], first: int, *chunks: np.ndarray) -> list[T]:
    """work(first unit, *columns) on chunks of the same units split in one block of columns per worker, in
    threads; in column order.

    For work that is per unit (every writer's statistics are): both cores, and no more memory than the chunks'.
    """
    width = chunks[0].shape[1]
    bounds = np.linspace(0, width, min(WORKERS, width) + 1).astype(int).tolist()
    blocks = list(itertools.pairwise(bounds))
    if len(blocks) == 1:
        return [work(first, *chunks)]
    with ThreadPoolExecutor(len(blocks)) as pool:
        return list(pool.map(lambda b: work(first + b[0], *(c[:, b[0]:b[1]] for c in chunks)), blocks))
