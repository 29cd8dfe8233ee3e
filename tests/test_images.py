"""worker.images: the file list, decoding every PIL mode to RGB, and skip reasons for bad files."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from fixtures import png_header_only
from PIL import Image

from worker.categories import builtin_category
from worker.images import (
    ImageDataset,
    ImagesError,
    SkipImage,
    decode,
    list_image_files,
    make_loader,
    spread_subset,
    to_rgb,
)
from worker.models import CaffeTransform


def warned_size() -> tuple[int, int]:
    """A size 1.5x over PIL's MAX_IMAGE_PIXELS: PIL warns (DecompressionBombWarning), not raises."""
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    assert Image.MAX_IMAGE_PIXELS < side * side < 2 * Image.MAX_IMAGE_PIXELS
    return side, side


@pytest.fixture
def photo() -> Image.Image:
    """A small RGB image with structure in every channel."""
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


# ---------------------------------------------------------------- the file list


def test_file_list_is_sorted_case_insensitive_and_records_what_it_cannot_use(tmp_path, photo):
    root = tmp_path / "images"
    (root / "n02088364" / "nested").mkdir(parents=True)
    (root / "n01440764").mkdir()
    photo.save(root / "n02088364" / "b.JPEG")
    photo.save(root / "n02088364" / "A.Png")
    photo.save(root / "n02088364" / "nested" / "c.jpg")
    photo.save(root / "n01440764" / "z.jpeg")
    photo.save(root / "stray.jpg")
    (root / "n01440764" / "readme.txt").write_text("not an image extension")
    os.symlink(".", root / "n01440764" / "loop")
    os.symlink("gone.jpg", root / "n01440764" / "broken.jpg")
    os.mkfifo(root / "n01440764" / "pipe.jpg")
    with open(os.fsencode(root / "n01440764") + b"/bad\xff.jpg", "wb"):
        pass

    entries = list_image_files(root)
    assert [e.path for e in entries] == sorted(e.path for e in entries)
    listed = {e.path: (e.wnid, e.problem) for e in entries}
    assert listed == {
        "n01440764/bad\ufffd.jpg": ("n01440764", "file name is not valid UTF-8"),
        "n01440764/broken.jpg": ("n01440764", listed["n01440764/broken.jpg"][1]),
        "n01440764/loop": ("n01440764", "symlink loop: links back to a folder it is inside"),
        "n01440764/pipe.jpg": ("n01440764", "not a regular file"),
        "n01440764/z.jpeg": ("n01440764", None),
        "n02088364/A.Png": ("n02088364", None),
        "n02088364/b.JPEG": ("n02088364", None),
        "n02088364/nested/c.jpg": ("n02088364", None),
        "stray.jpg": ("", None),
    }
    assert listed["n01440764/broken.jpg"][1].startswith("file not found")
    assert list_image_files(root) == entries  # deterministic


def test_file_list_follows_folder_links_that_are_not_loops(tmp_path, photo):
    real = tmp_path / "elsewhere" / "beagles"
    real.mkdir(parents=True)
    photo.save(real / "x.jpg")
    root = tmp_path / "images"
    root.mkdir()
    os.symlink(real, root / "n02088364")
    assert [(e.path, e.problem) for e in list_image_files(root)] == [("n02088364/x.jpg", None)]


def test_unusable_images_folder_is_an_error(tmp_path):
    with pytest.raises(ImagesError, match="images folder not found"):
        list_image_files(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImagesError, match="not a folder"):
        list_image_files(tmp_path / "file")
    (tmp_path / "empty" / "n01440764").mkdir(parents=True)
    with pytest.raises(ImagesError, match="no image files under"):
        list_image_files(tmp_path / "empty")


def test_limit_spreads_over_the_sorted_list_and_keeps_dogs_and_others(imagenet_sample):
    entries = list_image_files(imagenet_sample)
    assert len(entries) == 6308
    subset = spread_subset(entries, 300)
    assert len(subset) == 300 and subset == spread_subset(entries, 300)
    positions = [entries.index(e) for e in subset]
    assert positions == sorted(set(positions)) and positions[0] == 0
    gaps = np.diff(positions)
    assert gaps.min() >= 21 and gaps.max() <= 22  # every ~21st file (6308 / 300)
    dogs = set(builtin_category("dog").wnids)
    n_dogs = sum(e.wnid in dogs for e in subset)
    # The sample is 1744 / 6308 = 27.6 % dogs; an even spread keeps about that share.
    assert 70 <= n_dogs <= 95
    assert spread_subset(entries, None) == entries and spread_subset(entries, 10**6) == entries


# ---------------------------------------------------------------- decoding and conversion


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("L", lambda im: im.convert("L")),
        ("LA", lambda im: im.convert("LA")),
        ("RGBA", lambda im: im.convert("RGBA")),
        ("P", lambda im: im.convert("P", palette=Image.Palette.ADAPTIVE)),
        ("CMYK", lambda im: im.convert("CMYK")),
        ("1", lambda im: im.convert("1")),
    ],
)
def test_every_mode_decodes_to_rgb_with_its_original_size_and_mode(tmp_path, photo, mode, make):
    original = make(photo)
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "LA") else "x.png")
    original.save(path)
    rgb, width, height, found = decode(path)
    assert (rgb.mode, rgb.size, width, height, found) == ("RGB", (64, 48), 64, 48, mode)
    assert np.array_equal(np.asarray(rgb), np.asarray(original.convert("RGB")))


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    rgb, width, height, mode = decode(tmp_path / "g16.png")
    assert mode.startswith("I") and (width, height) == (4, 1)
    assert np.asarray(rgb)[0, :, 0].tolist() == [0, 1, 128, 255]
    assert np.array_equal(np.asarray(rgb)[..., 0], np.asarray(rgb)[..., 2])


def test_palette_with_transparency_converts_without_warning(tmp_path, photo):
    image = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.info["transparency"] = 0
    image.save(tmp_path / "t.gif", transparency=0)
    with warnings.catch_warnings(), Image.open(tmp_path / "t.gif") as opened:
        warnings.simplefilter("error")
        rgb = to_rgb(opened)
    assert rgb.mode == "RGB"


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("zero.jpg", lambda p, im: p.touch(), "empty file (0 bytes)"),
        ("text.JPEG", lambda p, im: p.write_text("not a picture"), "not an image (unrecognised format)"),
        ("truncated.jpg", lambda p, im: (im.save(p), p.write_bytes(p.read_bytes()[:400])), "truncated image: "),
        ("bomb.png", lambda p, im: png_header_only(p, 100_000, 100_000), "decompression bomb: "),
        # Between MAX_IMAGE_PIXELS and twice that PIL only warns; it is treated as a bomb as well.
        ("warned.png", lambda p, im: png_header_only(p, *warned_size()), "decompression bomb: "),
        ("gone.jpg", lambda p, im: None, "file not found"),
        ("folder.jpg", lambda p, im: p.mkdir(), "not a regular file"),
        ("loop.jpg", lambda p, im: os.symlink("loop.jpg", p), "symlink loop"),
    ],
)
def test_bad_files_become_skip_reasons(tmp_path, photo, name, make, reason):
    path = tmp_path / name
    make(path, photo)
    with pytest.raises(SkipImage) as caught:
        decode(path)
    assert str(caught.value).startswith(reason)


# ---------------------------------------------------------------- dataset and loader


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_separates_good_from_bad_in_file_order(tmp_path, photo, workers):
    root = tmp_path / "images"
    (root / "n01440764").mkdir(parents=True)
    files = []
    for i in range(7):
        path = root / "n01440764" / f"{i}.jpg"
        if i in (2, 5):
            path.write_text("broken")
        else:
            photo.rotate(i * 10).save(path)
        files.append((100 + i, f"n01440764/{i}.jpg"))
    transform = CaffeTransform()
    loader = make_loader(ImageDataset(root, files, transform), batch_size=3, workers=workers, pin_memory=False)
    batches = list(loader)
    assert [[d.file_id for d in b.good] for b in batches] == [[100, 101], [103, 104], [106]]
    assert [[(d.file_id, d.reason) for d in b.bad] for b in batches] == [
        [(102, "not an image (unrecognised format)")], [(105, "not an image (unrecognised format)")], []
    ]  # fmt: skip
    first = batches[0]
    assert first.pixels.shape == (2, 3, 224, 224) and first.pixels.dtype == torch.float32
    with Image.open(root / "n01440764" / "1.jpg") as stored:
        expected = transform(stored.convert("RGB"))
    assert torch.equal(first.pixels[1], expected)
    assert (first.good[0].width, first.good[0].height, first.good[0].mode) == (64, 48, "RGB")


def test_a_batch_of_only_bad_files_has_no_pixels(tmp_path):
    (tmp_path / "a.jpg").touch()
    loader = make_loader(ImageDataset(tmp_path, [(0, "a.jpg")], CaffeTransform()), batch_size=4, workers=0,
                         pin_memory=False)  # fmt: skip
    (batch,) = list(loader)
    assert batch.pixels is None and batch.good == [] and batch.bad[0].reason == "empty file (0 bytes)"


def test_real_sample_images_decode(imagenet_sample):
    entries = spread_subset(list_image_files(imagenet_sample), 40)
    for entry in entries:
        rgb, width, height, mode = decode(imagenet_sample / entry.path)
        assert rgb.mode == "RGB" and rgb.size == (width, height) and mode in ("RGB", "L")
