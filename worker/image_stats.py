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

from typing import TYPE_CHECKING, Final

from worker import schema

if TYPE_CHECKING:
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
    r, g, b = rgb.unbind(1)  # each N x H x W
    luma = REC709[0] * r + REC709[1] * g + REC709[2] * b
    top, bottom = rgb.amax(1), rgb.amin(1)
    saturation = torch.where(top > 0, (top - bottom) / top.clamp_min(1e-12), 0.0)
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = torch.hypot(_std(rg), _std(yb)) + COLOURFULNESS_MEAN_WEIGHT * torch.hypot(
        rg.mean((1, 2)), yb.mean((1, 2))
    )
    return torch.stack(
        (luma.mean((1, 2)), _std(luma), saturation.mean((1, 2)), colourfulness, high_frequency_share(luma)),
        dim=1,
    )  # N x 5


def _std(x: Tensor) -> Tensor:
    """N x H x W -> N: the population standard deviation of each image."""
    return x.std((1, 2), correction=0)


def high_frequency_share(luma: Tensor, cutoff: float = HF_CUTOFF) -> Tensor:
    """N x H x W luma -> N: share of the non-DC spectral power above `cutoff` cycles/pixel (Hann-windowed)."""
    import torch

    n, h, w = luma.shape
    window = torch.outer(
        torch.hann_window(h, periodic=False, device=luma.device), torch.hann_window(w, periodic=False, device=luma.device)
    )
    centred = (luma - luma.mean((1, 2), keepdim=True)) * window
    power = torch.fft.fft2(centred).abs().square()  # N x H x W
    fy = torch.fft.fftfreq(h, device=luma.device).view(h, 1)
    fx = torch.fft.fftfreq(w, device=luma.device).view(1, w)
    radius = torch.hypot(fy, fx)  # H x W, cycles/pixel
    total = (power * (radius > 0)).sum((1, 2))
    high = (power * (radius > cutoff)).sum((1, 2))
    return torch.where(total > 0, high / total.clamp_min(1e-30), 0.0)
