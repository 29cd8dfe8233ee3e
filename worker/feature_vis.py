"""Feature visualisation by optimisation: the images that drive a unit up (positive) and down (negative).

The recipe is Lucid's (Olah, Mordvintsev & Schubert 2017, "Feature Visualization", Distill; the Lucid
library's optvis defaults), written in torch; docs/interventions.md lists each choice and its source:
- the image is parameterised by its Fourier spectrum, scaled by 1/frequency, with decorrelated colour
  (Lucid's colour_correlation_svd_sqrt) and a sigmoid onto 0..1;
- every step applies Lucid's standard_transforms: pad 12 with grey, jitter 8, scale 0.9..1.1,
  rotate -10..10 degrees, jitter 4;
- Adam, learning rate 0.05, 512 steps, 128 x 128 pixels;
- the objective is the unit's mean pre-ReLU response over its map, with a diversity term (Lucid's
  `diversity`: the cosine similarity of the layer's Gram matrices between the images of one unit and
  direction) so that the images of a batch differ.

Many units are optimised in one batch: each image has its own unit and direction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from worker.models import LoadedModel

STEPS = 512
SIZE = 128
LEARNING_RATE = 0.05
DIVERSITY = 1e2  # Lucid's tutorials' weight: `objectives.channel(...) - 1e2 * objectives.diversity(layer)`
PAD = 12
JITTER = (8, 4)
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))  # 0.9 .. 1.1
ANGLES = tuple(range(-10, 11)) + 5 * (0,)  # degrees; no rotation weighted up, as Lucid's
# Lucid's square root of ImageNet's colour correlation (its SVD), columns normalised by the largest.
_COLOUR = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
COLOUR_DECORRELATION = _COLOUR / np.max(np.linalg.norm(_COLOUR, axis=0))


@dataclass(frozen=True)
class Target:
    """One image to optimise: a unit of the layer, a direction (+1 up, -1 down), and its group for diversity."""

    unit: int
    sign: int
    group: int  # images of one group (same unit and direction) are pushed apart by the diversity term


class FourierImage(torch.nn.Module):
    """A batch of images parameterised by their scaled spectrum, in decorrelated colour; forward() -> RGB 0..1."""

    def __init__(self, batch: int, size: int, generator: torch.Generator, sd: float = 0.01) -> None:
        super().__init__()
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        freqs = torch.sqrt(fx * fx + fy * fy)
        # 1/f: natural images' amplitude spectrum; sqrt(size^2) undoes irfft2's normalisation.
        self.register_buffer("scale", size / torch.clamp(freqs, min=1.0 / size))
        shape = (batch, 3, size, size // 2 + 1, 2)
        self.spectrum = torch.nn.Parameter(torch.randn(shape, generator=generator) * sd)
        self.size = size

    def forward(self) -> Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size)) / 4.0
        colour = torch.from_numpy(COLOUR_DECORRELATION).to(image)
        image = torch.einsum("bchw,dc->bdhw", image, colour)
        return torch.sigmoid(image)


def _jitter(x: Tensor, d: int, generator: torch.Generator) -> Tensor:
    """A random crop d pixels smaller, at offsets 0..d: Lucid's jitter(d)."""
    dx, dy = (int(v) for v in torch.randint(0, d + 1, (2,), generator=generator))
    h, w = x.shape[-2:]
    return x[..., dy: h - d + dy, dx: w - d + dx]


def _scale_rotate(x: Tensor, generator: torch.Generator) -> Tensor:
    """One random scale and rotation about the centre for the whole batch (bilinear, differentiable)."""
    scale = SCALES[int(torch.randint(len(SCALES), (1,), generator=generator))]
    angle = math.radians(ANGLES[int(torch.randint(len(ANGLES), (1,), generator=generator))])
    h, w = x.shape[-2:]
    out = (round(h * scale), round(w * scale))
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), [x.shape[0], x.shape[1], *out], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def transform(x: Tensor, generator: torch.Generator) -> Tensor:
    """Lucid's standard_transforms on RGB 0..1 images."""
    x = F.pad(x, (PAD,) * 4, value=0.5)
    x = _jitter(x, JITTER[0], generator)
    x = _scale_rotate(x, generator)
    return _jitter(x, JITTER[1], generator)


class LayerProbe:
    """A layer's whole pre-ReLU map of a batch, kept by hooks on its branches, differentiable; the net stops there."""

    def __init__(self, model: LoadedModel, layer: str) -> None:
        self.model = model
        tap = model.taps[model.select_layers([layer])[0]]
        self._stages = model.stages[: tap.stage + 1]
        self._parts: list[Tensor | None] = [None] * len(tap.branches)
        self._handles = [model.net.get_submodule(b.module).register_forward_hook(self._hook(i))
                         for i, b in enumerate(tap.branches)]

    def _hook(self, index: int):  # noqa: ANN202 - a forward hook
        def hook(module: torch.nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            self._parts[index] = output.clone()  # the ReLU that follows runs in place

        return hook

    def __call__(self, network_input: Tensor, *, whole: bool = False) -> tuple[Tensor, Tensor]:
        """[N, 3, H, W] network input -> (the layer's [N, units, h, w] pre-ReLU maps, the output of the last stage
        run: the layer's post-ReLU output, or with whole=True the network's logits)."""
        self._parts = [None] * len(self._parts)
        x = network_input
        for _, stage in (self.model.stages if whole else self._stages):
            x = stage(x)
        return torch.cat(self._parts, 1), x  # type: ignore[arg-type]

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def diversity(post_relu: Tensor, groups: Tensor) -> Tensor:
    """Lucid's diversity: per image, the summed cosine similarity of its Gram matrix with the others of its group.

    Lucid averages the objective over a batch and divides this sum by the batch's size; the loss of `optimise` sums
    both over the images, the same ratio (DIVERSITY) between them per group."""
    flat = post_relu.flatten(2)  # N, C, HW
    grams = torch.bmm(flat, flat.transpose(1, 2)).flatten(1)
    grams = F.normalize(grams, dim=1, eps=1e-10)
    similarity = grams @ grams.T
    same = (groups[:, None] == groups[None, :]) & ~torch.eye(len(groups), dtype=torch.bool, device=groups.device)
    return (similarity * same).sum(1)


def optimise(model: LoadedModel, layer: str, targets: Sequence[Target], *, steps: int = STEPS, size: int = SIZE,
             seed: int = 0, device: torch.device | str = "cpu", progress=None) -> np.ndarray:  # noqa: ANN001
    """Optimise one image per target together: uint8 N x size x size x 3 RGB. Deterministic for a seed on a CPU
    (a GPU's grid_sample backward is not)."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    image = FourierImage(len(targets), size, generator).to(device)
    units = torch.tensor([t.unit for t in targets], device=device)
    signs = torch.tensor([float(t.sign) for t in targets], device=device)
    groups = torch.tensor([t.group for t in targets], device=device)
    rows = torch.arange(len(targets), device=device)
    probe = LayerProbe(model, layer)
    model.net.to(device)
    for parameter in model.net.parameters():
        parameter.requires_grad_(False)
    optimizer = torch.optim.Adam(image.parameters(), lr=LEARNING_RATE)
    try:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            pre, _ = probe(model.from_rgb255(transform(image(), generator) * 255.0))
            objective = pre[rows, units].mean((1, 2)) * signs
            loss = -objective.sum() + DIVERSITY * diversity(F.relu(pre), groups).sum()
            loss.backward()
            optimizer.step()
            if progress is not None:
                progress(len(targets))  # image-steps
        with torch.no_grad():
            final = image()
    finally:
        probe.close()
    return (final * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@dataclass(frozen=True)
class Reading:
    """What the network makes of stored images: each one's unit response and its softmax over the classes."""

    objective: np.ndarray  # the unit's mean pre-ReLU response, unsigned
    probs: np.ndarray  # N x classes


def read(model: LoadedModel, layer: str, images: np.ndarray, units: Sequence[int], *,
         device: torch.device | str = "cpu") -> Reading:
    """uint8 N x H x W x 3 images as the network sees a dataset image: upsampled (bilinear) to its input size, so
    that a unit's response compares with its act_mean over the run's images; one forward pass gives both."""
    crop = int(model.preprocessing.get("center_crop", 224))
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float().to(device)
    if batch.shape[-2:] != (crop, crop):
        batch = F.interpolate(batch, size=(crop, crop), mode="bilinear", align_corners=False, antialias=False)
    probe = LayerProbe(model, layer)
    try:
        with torch.no_grad():
            pre, logits = probe(model.from_rgb255(batch), whole=True)
    finally:
        probe.close()
    rows = torch.arange(len(units), device=pre.device)
    objective = pre[rows, torch.tensor(list(units), device=pre.device)].mean((1, 2))
    return Reading(objective.double().cpu().numpy(), torch.softmax(logits.float(), dim=1).cpu().numpy())
