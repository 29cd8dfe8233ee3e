"""A run's images as arrays indexed by image id, read once per DB generation.

A unit page shows a few dozen images; looking each of them up in `images` costs a scan of the
run's image ids per page (about 5 ms at 286,000 images on a busy machine), while the whole table
as arrays is 12 bytes an image (3.4 MB at 286,000) and read in one query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.db import Reader
from worker import schema


@dataclass(frozen=True)
class ImageIndex:
    """Per image id: its class (a code into wnids and names; -1 for no image) and its decoded size."""

    code: np.ndarray  # int32
    width: np.ndarray  # int32
    height: np.ndarray  # int32
    wnids: list[str]
    names: list[str]

    def has(self, image_id: int) -> bool:
        """Whether the run has an image with this id."""
        return 0 <= image_id < len(self.code) and self.code[image_id] >= 0

    def wnid(self, image_id: int) -> str:
        return self.wnids[self.code[image_id]]

    def class_name(self, image_id: int) -> str:
        return self.names[self.code[image_id]]

    def size(self, image_id: int) -> tuple[int, int]:
        """(width, height) as the worker decoded it."""
        return int(self.width[image_id]), int(self.height[image_id])


def image_index(reader: Reader, run_id: int) -> ImageIndex:
    """The run's ImageIndex, memoised for the DB generation."""
    return reader.generation.memo(("image_index", run_id), lambda: _read(reader, run_id))


def _read(reader: Reader, run_id: int) -> ImageIndex:
    # The classes are coded in SQL: numpy's unique over 286,000 strings took seconds.
    q = {"run_id": run_id}
    classes = reader.rows(
        f"SELECT DISTINCT wnid, class_name FROM {schema.IMAGES} WHERE run_id = $run_id ORDER BY wnid, class_name", q
    )
    cols = reader.columns(
        f"""SELECT image_id, dense_rank() OVER (ORDER BY wnid, class_name) - 1 AS code, width, height
            FROM {schema.IMAGES} WHERE run_id = $run_id""",
        q,
    )
    ids = cols["image_id"].astype(np.int64)
    size = int(ids.max()) + 1 if len(ids) else 0
    code, width, height = (np.full(size, -1, dtype=np.int32) for _ in range(3))
    code[ids], width[ids], height[ids] = cols["code"], cols["width"], cols["height"]
    return ImageIndex(code=code, width=width, height=height, wnids=[w for w, _ in classes],
                      names=[n for _, n in classes])


def category_wnids(reader: Reader, run_id: int, category: str) -> frozenset[str]:
    """The WNIDs of a category of the run, memoised for the DB generation."""
    return reader.generation.memo(("category_wnids", run_id, category), lambda: frozenset(r[0] for r in reader.rows(
        f"SELECT wnid FROM {schema.CATEGORIES} WHERE run_id = $run_id AND category = $category",
        {"run_id": run_id, "category": category},
    )))
