"""glibc's allocator set for the worker's large, short-lived tensors: a freed block stays in the heap for the next batch.

glibc serves a block above its mmap threshold (32 MiB at most while it adapts) with a fresh mmap and unmaps it on
free, so every batch page-faults its largest maps in again: at the CPU's batch of 16, BVLC GoogLeNet's first maps are
51 MB (VGG's 205 MB). On this project's 2-core CPU those faults made the network up to mixed4c a quarter slower on a
repeated batch, and a run's first pass a tenth slower (docs/performance.md, "The allocator"). PyTorch's tuning guide
reaches the same end by preloading jemalloc or tcmalloc; two mallopt calls need no library.
"""

from __future__ import annotations

import ctypes
import os

# mallopt's parameter numbers, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Above the largest map any family makes at the CPU batch (VGG's first at 224 px: 205 MB); the heap may then keep
# up to TRIM_THRESHOLD of freed memory, a few batches' maps, rather than hand it back to the system.
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 512 << 20
ENV_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")  # the same, in GLIBC_TUNABLES


def keep_freed_blocks() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (and the loader processes it forks); True when glibc
    took both.

    False, changing nothing, where the C library has no mallopt (not glibc) or where the user set either threshold
    through glibc's environment variables or GLIBC_TUNABLES, which then stand. A glibc that refuses a value (older
    ones capped the mmap threshold at 32 MiB) keeps its own for that one.
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(name in os.environ for name in ENV_VARS) or any(tunable in tunables for tunable in TUNABLES):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    took = [bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)), bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))]
    return all(took)
