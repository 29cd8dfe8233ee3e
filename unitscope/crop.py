"""Where in an image the network looked: the centre crop of a run's preprocessing, from runs.preprocessing.

Standard library only, so the server uses it to align a unit's map with the image. Both models
resize the short side to `resize_short_side` and take a centre square of `center_crop`; they differ
in the rounding, reproduced here exactly:
- caffe (bvlc-googlenet, worker.models.bvlc.CaffeTransform): long side rounded to the nearest
  pixel, crop offset floored, (W - crop) // 2;
- torchvision (googlenet, the weights' transforms()): long side truncated, crop offset
  int(round((W - crop) / 2)), as torchvision.transforms.functional.center_crop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class CropBox:
    """The crop as fractions of the original image: left, top, width, height, each in [0, 1]."""

    left: float
    top: float
    width: float
    height: float


def _edge(value: object) -> int:
    """An edge length as the description stores it: a number, or torchvision's one-element list."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"not an edge length: {value!r}")
    return value


def resized_size(preprocessing: dict[str, object], width: int, height: int) -> tuple[int, int]:
    """The image's size after the preprocessing's resize, before the crop."""
    short = _edge(preprocessing["resize_short_side"])
    if preprocessing.get("convention") == "caffe":
        scale = short / min(width, height)
        return max(short, round(width * scale)), max(short, round(height * scale))
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def crop_offset(preprocessing: dict[str, object], resized: tuple[int, int]) -> tuple[int, int]:
    """(left, top) of the centre crop in the resized image."""
    crop = _edge(preprocessing["center_crop"])
    w, h = resized
    if preprocessing.get("convention") == "caffe":
        return (w - crop) // 2, (h - crop) // 2
    return int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))


def network_crop(preprocessing_json: str, width: int, height: int) -> CropBox | None:
    """The crop the network saw of a width x height image, or None when the run's preprocessing
    does not describe a resize-then-centre-crop (then no map can be aligned)."""
    try:
        preprocessing = json.loads(preprocessing_json)
        resized = resized_size(preprocessing, width, height)
        left, top = crop_offset(preprocessing, resized)
        crop = _edge(preprocessing["center_crop"])
    except (ValueError, KeyError, TypeError, ZeroDivisionError, AttributeError):
        return None
    w, h = resized
    return CropBox(left=left / w, top=top / h, width=crop / w, height=crop / h)
