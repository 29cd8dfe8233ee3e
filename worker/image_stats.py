"""Low-level statistics of the images the network saw, one row per image, computed per batch in torch.

Input: the crop the network saw as RGB on the 0..255 scale, before any mean subtraction
(LoadedModel.to_rgb255 of the batch), so the values describe exactly what the units responded to.
The statistics, in schema.IMAGE_STAT_COLUMNS order:

- luminance: the mean Rec. 709 luma Y = 0.2126 R + 0.7152 G + 0.0722 B (of the gamma-encoded
  values, as stored: luma, not linear-light luminance), 0..255.
- contrast: RMS contrast, the (population) standard deviation of Y over the image, 0..127.5.
- saturation: the mean HSV saturation (max - min) / max over R, G, B, 0 where max = 0; 0..1.
- colourfulness: Hasler & Süsstrunk (2003), with rg = R - G and yb = (R + G) / 2 - B:
  sqrt(std_rg² + std_yb²) + 0.3 sqrt(mean_rg² + mean_yb²).
- hf_energy: the share of Y's spectral power at radial spatial frequency above HF_CUTOFF = 0.25
  cycles/pixel (the Nyquist limit is 0.5 along an axis), among all its power but the DC term. Y
  minus its mean is multiplied by a 2-D Hann window first, so that the jump between opposite
  borders, which the FFT sees as an edge, adds no false high frequencies. 0 for a flat image;
  close to 1 for a one-pixel checkerboard.

Importing this module does not import torch (it is imported inside the functions), so the worker's
command line can load it before torch, as it does every module it needs early.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final

from unitscope import schema

if TYPE_CHECKING:
    import torch
    from torch import Tensor

REC709: Final = (0.2126, 0.7152, 0.0722)  # luma weights of R, G, B
HF_CUTOFF: Final = 0.25  # cycles/pixel
COLOURFULNESS_MEAN_WEIGHT: Final = 0.3  # Hasler & Süsstrunk's weight of the mean term

assert schema.IMAGE_STAT_COLUMNS == ("luminance", "contrast", "saturation", "colourfulness", "hf_energy")


def image_stats(rgb: Tensor) -> Tensor:
    """N x 3 x H x W RGB on 0..255 -> N x 5 float32, the statistics in schema.IMAGE_STAT_COLUMNS order.

    Runs on the tensor's device; every statistic is a reduction over each image's own pixels.
    """
    import torch

    rgb = rgb.float()
    # Luma, rg and yb are linear in R, G, B: one 3 x 3 map makes the three planes in a single pass.
    planes = torch.einsum("kc,nchw->nkhw", _opponent_matrix(rgb.device), rgb)  # N x 3 (Y, rg, yb) x H x W
    mean, std = planes.mean((2, 3)), planes.std((2, 3), correction=0)  # N x 3 each
    r, g, b = rgb.unbind(1)
    # Element-wise over the three planes: much faster on a CPU than amax/amin over the channel axis.
    top, bottom = torch.maximum(torch.maximum(r, g), b), torch.minimum(torch.minimum(r, g), b)
    saturation = torch.where(top > 0, (top - bottom) / top, 0.0).mean((1, 2))
    colourfulness = torch.hypot(std[:, 1], std[:, 2]) + COLOURFULNESS_MEAN_WEIGHT * torch.hypot(mean[:, 1], mean[:, 2])
    hf_energy = high_frequency_share(planes[:, 0], mean[:, 0])
    return torch.stack((mean[:, 0], std[:, 0], saturation, colourfulness, hf_energy), dim=1)  # N x 5


@functools.lru_cache(maxsize=4)
def _opponent_matrix(device: torch.device) -> Tensor:
    """Rows: Rec. 709 luma, rg = R - G, yb = (R + G) / 2 - B, as weights of (R, G, B)."""
    import torch

    return torch.tensor([REC709, (1.0, -1.0, 0.0), (0.5, 0.5, -1.0)], device=device)


def high_frequency_share(luma: Tensor, mean: Tensor, cutoff: float = HF_CUTOFF) -> Tensor:
    """N x H x W luma and its N means -> N: share of the non-DC spectral power above `cutoff`
    cycles/pixel, Hann-windowed."""
    import torch

    n, h, w = luma.shape
    window, weights = _spectral_constants(h, w, cutoff, luma.device)
    centred = (luma - mean.view(n, 1, 1)) * window
    spectrum = torch.fft.rfft2(centred)  # N x H x (W // 2 + 1): the other half mirrors it
    power = spectrum.real.square() + spectrum.imag.square()
    total, high = (power.reshape(n, -1) @ weights).unbind(1)
    return torch.where(total > 0, high / total.clamp_min(1e-30), 0.0)


@functools.lru_cache(maxsize=8)
def _spectral_constants(h: int, w: int, cutoff: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """The H x W Hann window, and the (H * (W // 2 + 1)) x 2 weights that sum an rfft2 power spectrum's
    non-DC power (column 0) and its power above `cutoff` (column 1), each mirrored column counted twice."""
    import torch

    window = torch.outer(torch.hann_window(h, periodic=False, dtype=torch.float64),
                         torch.hann_window(w, periodic=False, dtype=torch.float64))  # fmt: skip
    fy = torch.fft.fftfreq(h, dtype=torch.float64).view(h, 1)
    fx = torch.fft.rfftfreq(w, dtype=torch.float64).view(1, -1)
    radius = torch.hypot(fy, fx)  # cycles/pixel
    mirrored = torch.full((w // 2 + 1,), 2.0, dtype=torch.float64)
    mirrored[0] = 1.0
    if w % 2 == 0:
        mirrored[-1] = 1.0  # the Nyquist column has no mirror
    weights = torch.stack(((radius > 0) * mirrored, (radius > cutoff) * mirrored), dim=-1).reshape(-1, 2)
    return window.float().to(device), weights.float().to(device)
