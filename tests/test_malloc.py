"""worker.malloc: a freed block above glibc's mmap ceiling is reused from the heap, not faulted in afresh."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from worker.malloc import keep_freed_blocks

# Three rounds of malloc, touch every page, free: 64 MiB, above glibc's adaptive mmap threshold's 32 MiB ceiling.
# Prints the minor page faults of the last round. Run in a child: mallopt changes the whole process.
ROUNDS = """
import ctypes, resource, sys
from worker.malloc import keep_freed_blocks
print(keep_freed_blocks() if sys.argv[1] == "tuned" else None)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
size = 64 << 20
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults)
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")


def _last_round(how: str) -> tuple[str, int]:
    """(what keep_freed_blocks returned, the last round's faults) in a child with glibc's defaults."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", ROUNDS, how], env=clean, capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    return out[0], int(out[1])


@glibc
def test_a_freed_large_block_is_reused_without_page_faults() -> None:
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    tuned, tuned_faults = _last_round("tuned")
    assert tuned == "True"
    # Left to glibc's defaults, every round maps the block afresh and faults each page in again.
    _, plain_faults = _last_round("plain")
    assert plain_faults >= pages * 0.9
    assert tuned_faults <= pages * 0.01


def test_glibc_s_own_variables_stand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert keep_freed_blocks() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536")
    assert keep_freed_blocks() is False
