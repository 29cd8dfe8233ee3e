"""What every torchvision classifier here shares: its weights argument (published entry, local .pth or
random init), the description of its weights' transforms(), and the [-1, 1] input re-normalisation
of the ported Inception weights (googlenet, inception_v3)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum

from worker.categories import load_imagenet_classes
from worker.db_files import first_line
from worker.models._api import DEFAULT, WeightsArg, WeightsError, sha256_file
from worker.models.taps import LayerTap, LoadedModel, Stage

# The scale the ported Inception weights were trained on: inputs in [-1, 1], i.e. (x - 0.5) / 0.5
# of 0..1 pixels. It belongs to torchvision's transform_input, not to the published normalisation.
_TRAINED_MEAN_STD: Final = 0.5

State = Mapping[str, Any]


class InputRenormalisation(nn.Module):
    """torchvision's `transform_input=True` as a module: undo the weights' ImageNet normalisation and
    apply the [-1, 1] scale the network was trained on, per channel: x * std / 0.5 + (mean - 0.5) / 0.5.

    `mean` and `std` are those of the preprocessing feeding the net (the weights' transforms()).
    The constants are rounded to float32 once, from float64, as torchvision's Python-float ones are,
    so the result equals GoogLeNet's and Inception3's transform_input=True.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean64, std64 = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
        scale = (std64 / _TRAINED_MEAN_STD).float().view(1, -1, 1, 1)
        shift = ((mean64 - _TRAINED_MEAN_STD) / _TRAINED_MEAN_STD).float().view(1, -1, 1, 1)
        # Not in the state dict: derived from the preprocessing, so state dicts stay torchvision's.
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


def read_state_dict(file: Path, model: str) -> State:
    """The state dict in a local .pth file, or a WeightsError naming the file."""
    if file.is_dir():
        raise WeightsError(f"{file} is a folder: {model} takes a torchvision state dict file (.pth); the BVLC Caffe "
                           "and SqueezeNet folders are --model bvlc-googlenet and squeezenet1_1 (docs/models.md)")
    if not file.is_file():
        raise WeightsError(f"{model} state dict not found: {file}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and format errors alike: say which file
        # Not torch's own text for a refused pickle: its advice, weights_only=False, would run what the file holds.
        why = ("not a file of tensors saved by torch.save (torch.load with weights_only=True refused it; unitscope "
               "never loads a file that could run code)" if "weights_only" in str(error)
               else first_line(error))
        raise WeightsError(f"cannot read {model} state dict {file}: {why}") from error
    if not isinstance(state, Mapping):
        raise WeightsError(f"{file} does not hold a state dict")
    return state


def torchvision_weights(
    weights: WeightsArg, published: WeightsEnum, model: str, load: Callable[[State | None, Path | None], nn.Module]
) -> tuple[nn.Module, str, str]:
    """A torchvision model's `weights` argument -> (net in eval mode, source, sha256).

    DEFAULT is `published` (downloaded and cached by torchvision), a path a local state dict,
    None a random init. `load(state, file)` builds the net, loading `state` when there is one
    (None: the architecture's own init) and naming `file` in its errors.
    """
    if weights is DEFAULT:
        file = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(published.url).path).name
        state = published.get_state_dict(progress=True, check_hash=True)  # downloads once, then cached
        net, source, sha = load(state, file), f"torchvision {published!r} ({published.url})", sha256_file(file)
    elif weights is None:
        net, source, sha = load(None, None), "random init (no weights)", "none"
    else:
        file = Path(weights).expanduser()
        net, source, sha = load(read_state_dict(file, model), file), str(file.resolve()), sha256_file(file)
    return net.eval(), source, sha


def load_state(net: nn.Module, state: State, file: Path | None, architecture: str) -> None:
    """Load `state` into `net`, or a WeightsError naming the file and what it should have been."""
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise WeightsError(f"{file} is not a torchvision {architecture} state dict: {error}") from error


def describe(preset: nn.Module, published: WeightsEnum, *, transform_input: bool) -> dict[str, Any]:
    """JSON-able description of a torchvision preset (the weights' transforms()) for runs.preprocessing."""
    return {
        "convention": "torchvision",
        "weights_transforms": f"{published!r}.transforms()",
        "resize_short_side": preset.resize_size,
        "interpolation": preset.interpolation.value,
        "antialias": preset.antialias,
        "center_crop": preset.crop_size,
        "scale": "0..1",
        "channels": "RGB",
        "mean": list(preset.mean),
        "std": list(preset.std),
        # True: the net re-normalises its input as torchvision's transform_input=True (InputRenormalisation).
        "model_transform_input": transform_input,
    }


class Unnormalise:
    """The inverse of a torchvision preset's normalisation: N x 3 x H x W outputs -> RGB on 0..255.

    `mean` and `std` are the preset's (per channel, on the 0..1 scale): (x * std + mean) * 255, rounded
    to whole numbers: the preset resizes and crops the 8-bit PIL image, so this gives the crop back
    exactly (a black pixel is 0, not 1e-6, which would make its HSV saturation arbitrary).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, batch: Tensor) -> Tensor:
        mean = torch.tensor(self.mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
        return ((batch * std + mean) * 255.0).round()

    def inverse(self, batch: Tensor) -> Tensor:
        """RGB on 0..255 -> the preset's normalised input (not rounded: differentiable)."""
        mean = torch.tensor(self.mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
        return (batch / 255.0 - mean) / std

    def __repr__(self) -> str:
        return f"Unnormalise(mean={self.mean}, std={self.std})"


def torchvision_model(name: str, net: nn.Module, stages: Sequence[Stage], taps: Mapping[str, LayerTap],
                      published: WeightsEnum, source: str, sha: str, *, transform_input: bool) -> LoadedModel:
    """A torchvision network as a LoadedModel: its published weights' transforms, categories and description."""
    preprocessing = published.transforms()
    unnormalise = Unnormalise(preprocessing.mean, preprocessing.std)
    return LoadedModel(
        name=name,
        net=net,
        stages=stages,
        taps=taps,
        transform=preprocessing,
        to_rgb255=unnormalise,
        from_rgb255=unnormalise.inverse,
        preprocessing=describe(preprocessing, published, transform_input=transform_input),
        weights=source,
        weights_sha256=sha,
        class_names=tuple(published.meta["categories"]),
        class_wnids=tuple(load_imagenet_classes()),
    )
