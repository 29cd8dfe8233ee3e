"""`--decode gpu`: the loader processes only read file bytes; the run's device decodes and resizes.

The PIL path (worker.images) decodes and resizes every image on the CPU cores, which cannot keep
a GPU busy. Here each loader process reads a file and its header (size and mode, no pixels), and
the main process decodes a batch of baseline RGB JPEGs with one torchvision.io.decode_jpeg call
on the run's device (nvJPEG on a GPU, libjpeg-turbo on the CPU), then applies the model's own
transform to each uint8 tensor there: CaffeTransform and torchvision's presets take tensors with
the geometry they use for PIL images (short-side resize, centre crop, mean / std or Caffe's BGR
mean), antialiased bilinear in torch instead of PIL's resampling, in float32.

Everything else goes through the PIL path for that file, so it gives exactly the PIL path's pixels
or skip reason: grayscale, CMYK and other non-RGB JPEGs, PNG and the other formats (in the loader
process), and any JPEG that decode_jpeg refuses, e.g. a truncated one (in the main process).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader

from worker.images import (
    Batch,
    Decoded,
    FileDataset,
    SkipImage,
    Transform,
    decode_file,
    pil_skip_reasons,
    read_checked,
)
from worker.models import LoadedModel

# What runs.preprocessing adds for a --decode gpu run (a pil run's description is unchanged, so
# its config hash is too); it makes the two paths two configurations of a run.
GPU_DECODE: Final = {
    "path": "gpu",
    "jpeg": "torchvision.io.decode_jpeg on the run's device, RGB JPEGs",
    "resize": "torch, antialiased bilinear, the transform's own geometry",
    "others": "PIL, as --decode pil (grayscale, CMYK, non-JPEG, refused by decode_jpeg)",
}


def preprocessing_json(model: LoadedModel, decode: str) -> str:
    """runs.preprocessing of a run: the model's transform, plus the decode path when it is not PIL."""
    if decode == "pil":
        return model.preprocessing_json()
    return dataclasses.replace(model, preprocessing={**model.preprocessing, "decode": GPU_DECODE}).preprocessing_json()


@dataclass
class Encoded:
    """One file as a loader process leaves it: the bytes for the device, or the PIL path's result."""

    item: Decoded  # file id and original size and mode; pixels or reason when PIL handled it
    path: str  # relative to the images root, for a fallback in the main process
    data: Tensor | None = None  # the file's bytes (uint8), when the device is to decode it


class EncodedDataset(FileDataset[Encoded]):
    """Reads files by position: RGB JPEGs as bytes, anything else decoded by PIL; never raises."""

    def __getitem__(self, index: int) -> Encoded:
        file_id, rel = self.files[index]
        try:
            data = read_checked(self.root / rel)
            with pil_skip_reasons(), Image.open(io.BytesIO(data)) as image:  # the header only
                kind, width, height, mode = image.format, image.width, image.height, image.mode
        except SkipImage as exc:
            return Encoded(Decoded(file_id, reason=str(exc)), rel)
        if kind == "JPEG" and mode == "RGB":
            data_tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return Encoded(Decoded(file_id, None, width, height, mode), rel, data_tensor)
        return Encoded(decode_file(self.root, file_id, rel, self.transform), rel)


def _as_list(items: list[Encoded]) -> list[Encoded]:
    return items


def decode_on(device: torch.device, data: list[Tensor]) -> list[Tensor | None]:
    """uint8 3 x H x W RGB tensors on `device`, one batched decode_jpeg call; None for a file it refuses."""
    if not data:
        return []
    # Imported here: the run imports this module for --decode pil too, which needs no torchvision (2 s to import).
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:  # one bad file fails the whole call: find it
        images: list[Tensor | None] = []
        for one in data:
            try:
                images.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                images.append(None)
        return images


class DeviceLoader:
    """Batches as worker.images.make_loader gives them, with pixels decoded and transformed on `device`."""

    def __init__(self, loader: DataLoader[list[Encoded]], root: Path, transform: Transform,
                 device: torch.device) -> None:  # fmt: skip
        self.loader, self.root, self.transform, self.device = loader, root, transform, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for items in self.loader:
            yield self.batch(items)

    def batch(self, items: list[Encoded]) -> Batch:
        """Decode the batch's JPEGs at once; a refused one goes through PIL, as every other file did."""
        images = iter(decode_on(self.device, [e.data for e in items if e.data is not None]))
        good: list[Decoded] = []
        bad: list[Decoded] = []
        pixels: list[Tensor] = []
        for e in items:
            item = e.item
            if e.data is not None:
                image = next(images)
                if image is None:
                    item = decode_file(self.root, item.file_id, e.path, self.transform)
                else:
                    item.pixels = self._transform(image, item)
            if item.reason is not None:
                bad.append(item)
                continue
            pixels.append(item.pixels.to(self.device, non_blocking=True))
            item.pixels = None  # the stacked tensor holds them
            good.append(item)
        return Batch(torch.stack(pixels) if pixels else None, good, bad)

    def _transform(self, image: Tensor, item: Decoded) -> Tensor | None:
        try:
            return self.transform(image)
        except Exception as exc:  # as worker.images.decode_file: one odd image must not stop the run
            item.reason = f"transform failed: {type(exc).__name__}: {exc}"
            return None


def make_device_loader(root: Path, files: Sequence[tuple[int, str]], transform: Transform, *, batch_size: int,
                       workers: int, device: torch.device) -> DeviceLoader:  # fmt: skip
    """The --decode gpu counterpart of worker.images.make_loader (same order, batches and skip reasons)."""
    loader: DataLoader[Any] = DataLoader(
        EncodedDataset(root, files, transform),
        batch_size=batch_size,
        shuffle=False,  # file order = image id order, which keeps batches resumable
        num_workers=workers,
        collate_fn=_as_list,
        prefetch_factor=4 if workers > 0 else None,
    )
    return DeviceLoader(loader, root, transform, device)
