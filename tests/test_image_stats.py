"""Low-level image statistics (worker.image_stats) on images whose values are known, and the inversion
of each model's normalisation back to the crop the network saw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from skimage import data

from unitscope import schema
from worker.image_stats import image_stats
from worker.models import get_model

SIZE = 224
COLUMN = {name: i for i, name in enumerate(schema.IMAGE_STAT_COLUMNS)}


def stats_of(*images: np.ndarray) -> dict[str, np.ndarray]:
    """H x W x RGB uint8-valued arrays -> {statistic: one value per image}."""
    batch = torch.stack([torch.from_numpy(np.array(a, dtype=np.float32)).permute(2, 0, 1) for a in images])
    values = image_stats(batch).numpy()
    assert values.shape == (len(images), len(schema.IMAGE_STAT_COLUMNS)) and values.dtype == np.float32
    return {name: values[:, i] for name, i in COLUMN.items()}


def flat(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.float32), (SIZE, SIZE, 3))


def checkerboard(low: int, high: int, cell: int = 1) -> np.ndarray:
    y, x = np.indices((SIZE, SIZE)) // cell
    grey = np.where((x + y) % 2 == 0, high, low).astype(np.float32)
    return np.repeat(grey[:, :, None], 3, axis=2)


@pytest.mark.parametrize("grey", [0, 37, 128, 255])
def test_a_flat_grey_image_has_its_grey_level_and_nothing_else(grey: int) -> None:
    s = stats_of(flat((grey, grey, grey)))
    assert s["luminance"][0] == pytest.approx(grey, abs=1e-3)
    for name in ("contrast", "saturation", "colourfulness", "hf_energy"):
        assert s[name][0] == pytest.approx(0.0, abs=1e-4), name


def test_a_one_pixel_checkerboard_has_half_the_range_as_contrast_and_all_its_power_high() -> None:
    s = stats_of(checkerboard(0, 255), checkerboard(100, 180))
    np.testing.assert_allclose(s["luminance"], [127.5, 140.0], atol=1e-3)
    np.testing.assert_allclose(s["contrast"], [127.5, 40.0], atol=1e-3)  # half of 255 and of 80
    np.testing.assert_allclose(s["hf_energy"], [1.0, 1.0], atol=1e-4)
    np.testing.assert_allclose(s["saturation"], [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(s["colourfulness"], [0.0, 0.0], atol=1e-3)


def grating(frequency: float, angle: float = 0.0) -> np.ndarray:
    """A grey sinusoidal grating of `frequency` cycles/pixel, its stripes turned by `angle` radians."""
    y, x = np.indices((SIZE, SIZE), dtype=np.float64)
    phase = 2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle))
    grey = 127.5 + 100 * np.cos(phase)
    return np.repeat(grey[:, :, None], 3, axis=2)


@pytest.mark.parametrize(("frequency", "angle", "high"), [
    (0.05, 0.0, False), (0.2, 0.0, False), (0.2, np.pi / 4, False),
    (0.3, 0.0, True), (0.45, 0.0, True), (0.3, np.pi / 3, True),
])  # fmt: skip
def test_hf_energy_is_all_or_nothing_on_a_grating_either_side_of_the_cutoff(
    frequency: float, angle: float, high: bool
) -> None:
    share = stats_of(grating(frequency, angle))["hf_energy"][0]
    assert share == pytest.approx(1.0 if high else 0.0, abs=0.01)


def test_saturated_colour_patches() -> None:
    red, green = flat((255, 0, 0)), flat((0, 255, 0))
    halves = np.concatenate([red[:, : SIZE // 2], green[:, SIZE // 2 :]], axis=1)
    s = stats_of(red, halves)
    np.testing.assert_allclose(s["saturation"], [1.0, 1.0], atol=1e-6)
    # Red alone: rg = 255 and yb = 127.5 everywhere: no spread, only the mean term.
    # Half red, half green: rg = +-255 (mean 0, std 255), yb = 127.5 everywhere.
    np.testing.assert_allclose(
        s["colourfulness"], [0.3 * np.hypot(255, 127.5), 255 + 0.3 * 127.5], rtol=1e-5
    )
    np.testing.assert_allclose(s["luminance"], [0.2126 * 255, (0.2126 + 0.7152) / 2 * 255], rtol=1e-5)
    np.testing.assert_allclose(s["contrast"], [0.0, (0.7152 - 0.2126) / 2 * 255], atol=1e-3)


def test_saturation_is_zero_on_black_and_one_half_on_a_half_grey_colour() -> None:
    s = stats_of(flat((0, 0, 0)), flat((200, 100, 150)))
    np.testing.assert_allclose(s["saturation"], [0.0, 0.5], atol=1e-6)


def test_the_statistics_match_a_numpy_computation_on_a_photo() -> None:
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((SIZE, SIZE)), dtype=np.float64)
    s = stats_of(photo)
    r, g, b = photo[..., 0], photo[..., 1], photo[..., 2]
    luma = 0.2126 * r + 0.7152 * g + 0.0722 * b
    top, bottom = photo.max(2), photo.min(2)
    rg, yb = r - g, (r + g) / 2 - b
    expected = {
        "luminance": luma.mean(),
        "contrast": luma.std(),
        "saturation": np.where(top > 0, (top - bottom) / np.maximum(top, 1e-12), 0).mean(),
        "colourfulness": np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()),
    }
    for name, value in expected.items():
        assert s[name][0] == pytest.approx(value, rel=1e-4), name
    assert 0.0 < s["hf_energy"][0] < 0.5  # a natural photo: most power at low frequencies


def caffe_crop(image: Image.Image) -> np.ndarray:
    """Caffe's preprocessing up to the crop: short side 256 (long side rounded), centre 224, floored offset."""
    width, height = image.size
    scale = 256 / min(width, height)
    size = (max(256, round(width * scale)), max(256, round(height * scale)))
    resized = image.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - 224) // 2, (size[1] - 224) // 2
    return np.asarray(resized.crop((left, top, left + 224, top + 224)), dtype=np.float32)


def torchvision_crop(image: Image.Image) -> np.ndarray:
    """torchvision's ImageClassification preset up to the crop: resize 256 (bilinear, antialias), centre 224."""
    resized = TF.resize(image, 256, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return np.asarray(TF.center_crop(resized, 224), dtype=np.float32)


@pytest.mark.parametrize(("model_name", "crop"), [("bvlc-googlenet", caffe_crop), ("googlenet", torchvision_crop)])
def test_to_rgb255_gives_back_the_crop_the_transform_made(model_name: str, crop) -> None:  # noqa: ANN001
    model = get_model(model_name, weights=None)
    photos = [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee()), Image.fromarray(data.astronaut())]
    batch = torch.stack([model.transform(p) for p in photos])
    rgb = model.to_rgb255(batch)
    assert rgb.shape == (3, 3, 224, 224)
    for got, photo in zip(rgb, photos):
        np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), crop(photo), atol=1e-3, rtol=0)
