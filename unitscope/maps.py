"""A unit's stored pre-ReLU maps: which ones a run keeps, and their codec.

A map is stored as its height x width values in little-endian float16, row-major: about 3
significant digits, fine for display (the study's numbers stay in `responses`, float32). Which maps:
for every unit of every layer of a run, its first MAP_N images of each ranking that a unit page
shows by default (SHOWN), in the order of metrics_sql.ranking_sql, ties by image id. The worker
writes them (worker.map_store), the server and the API decode them.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from unitscope import metrics_sql, schema

MAP_DTYPE: Final = np.dtype("<f2")  # little-endian float16

# The rankings a unit page shows by default, and the stat each ranks by.
SHOWN: Final[tuple[tuple[metrics_sql.RankKind, str], ...]] = (
    ("positive", schema.DEFAULT_POS_STAT),
    ("near_zero", schema.DEFAULT_NEAR_STAT),
    ("negative", schema.DEFAULT_NEG_STAT),
)

def encode(values: np.ndarray) -> list[bytes]:
    """Maps [m, height, width] -> each one's float16 little-endian row-major bytes."""
    if values.ndim != 3:
        raise ValueError(f"maps are m x height x width, got shape {values.shape}")
    flat = np.ascontiguousarray(values, dtype=MAP_DTYPE).reshape(len(values), -1)
    return [row.tobytes() for row in flat]


def decode(blob: bytes, height: int, width: int) -> np.ndarray:
    """Stored bytes -> the height x width map as float32."""
    return np.frombuffer(blob, dtype=MAP_DTYPE).reshape(height, width).astype(np.float32)
