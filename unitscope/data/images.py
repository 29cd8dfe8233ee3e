"""A run's images: as arrays indexed by image id (read once per DB version), their paths and sizes.

A unit page shows a few dozen images; looking each of them up in `images` costs a scan of the
run's image ids per page (about 5 ms at 286,000 images on a busy machine), while the whole table
as arrays is 12 bytes an image (3.4 MB at 286,000) and read in one query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unitscope import schema
from unitscope.data.source import Source
from unitscope.errors import NotFound


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


def image_index(source: Source, run_id: int) -> ImageIndex:
    """The run's ImageIndex, memoised for the DB generation."""
    return source.cached(("image_index", run_id), lambda: _read(source, run_id), keep=True)


def _read(source: Source, run_id: int) -> ImageIndex:
    # The classes are coded in SQL: numpy's unique over 286,000 strings took seconds.
    q = {"run_id": run_id}
    classes = source.rows(
        f"SELECT DISTINCT wnid, class_name FROM {schema.IMAGES} WHERE run_id = $run_id ORDER BY wnid, class_name", q
    )
    cols = source.arrays(
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


def category_wnids(source: Source, run_id: int, category: str) -> frozenset[str]:
    """The WNIDs of a category of the run, memoised for the DB generation."""
    return source.cached(("category_wnids", run_id, category), lambda: frozenset(r[0] for r in source.rows(
        f"SELECT wnid FROM {schema.CATEGORIES} WHERE run_id = $run_id AND category = $category",
        {"run_id": run_id, "category": category},
    )), keep=True)


def image_path(source: Source, run_id: int, image_id: int) -> str:
    """The stored relative path of an image of the run, or NotFound."""
    rows = source.rows(
        f"SELECT path FROM {schema.IMAGES} WHERE run_id = $run_id AND image_id = $image_id",
        {"run_id": run_id, "image_id": image_id},
    )
    if not rows:
        raise NotFound(f"no image {image_id} in run {run_id}")
    return rows[0][0]


def image_sizes(source: Source, run_id: int, image_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(width, height) of each of these images of the run, as decoded by the worker."""
    index = image_index(source, run_id)
    return {image_id: index.size(image_id) for image_id in image_ids if index.has(image_id)}
