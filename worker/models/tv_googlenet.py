"""googlenet: torchvision's GoogLeNet (batch norm; its own training), with its input re-normalisation
as an explicit first stage, and its published weights entry `GoogLeNet_Weights.IMAGENET1K_V1`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import GoogLeNet_Weights, GoogLeNetOutputs

from worker.categories import load_imagenet_classes
from worker.models._api import DEFAULT, WeightsArg, WeightsError, register_model, sha256_file
from worker.models.layers import MIXED
from worker.models.taps import Branch, LayerTap, LoadedModel, Stage, build_taps

PUBLISHED: Final = GoogLeNet_Weights.IMAGENET1K_V1
# The scale the ported Inception v1 weights were trained on: inputs in [-1, 1], i.e. (x - 0.5) / 0.5
# of 0..1 pixels. It belongs to torchvision's transform_input, not to the published normalisation.
_TRAINED_MEAN_STD: Final = 0.5


class InputRenormalisation(nn.Module):
    """torchvision's `transform_input=True` as a module: undo the weights' ImageNet normalisation and
    apply the [-1, 1] scale the network was trained on, per channel: x * std / 0.5 + (mean - 0.5) / 0.5.

    `mean` and `std` are those of the preprocessing feeding the net (the weights' transforms()).
    The constants are rounded to float32 once, from float64, as torchvision's Python-float ones are,
    so the result equals GoogLeNet's transform_input=True.
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

    def __repr__(self) -> str:
        return f"Unnormalise(mean={self.mean}, std={self.std})"


class TVGoogLeNet(torchvision.models.GoogLeNet):
    """torchvision's GoogLeNet built with transform_input=False, its re-normalisation done by an
    explicit first module, `renormalise`; the other modules and the state dict are torchvision's.

    Its input is the output of GoogLeNet_Weights.IMAGENET1K_V1.transforms(), whatever weights it holds.
    """

    def __init__(self, *, aux_logits: bool, init_weights: bool) -> None:
        super().__init__(aux_logits=aux_logits, transform_input=False, init_weights=init_weights)
        preset = PUBLISHED.transforms()
        self.renormalise = InputRenormalisation(preset.mean, preset.std)

    def forward(self, x: Tensor) -> GoogLeNetOutputs:
        return super().forward(self.renormalise(x))  # N x 3 x 224 x 224 in [-1, 1] scale


_STAGES: Final = (
    "renormalise", "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
    "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
    "inception5a", "inception5b",
)  # fmt: skip


def _stages(net: TVGoogLeNet) -> tuple[Stage, ...]:
    """TVGoogLeNet.forward in eval mode as a chain (aux heads only run in training)."""

    def head(x: Tensor) -> Tensor:
        return net.fc(net.dropout(torch.flatten(net.avgpool(x), 1)))  # N x 1000

    return (*((name, net.get_submodule(name)) for name in _STAGES), ("head", head))


def _taps(net: TVGoogLeNet, stages: Sequence[Stage]) -> Mapping[str, LayerTap]:
    """The study layers of torchvision's GoogLeNet; taps are BasicConv2d.bn (before in-place ReLU)."""
    places: dict[str, tuple[str, str, str, list[Branch]]] = {}
    for layer in ("conv1", "conv2", "conv3"):
        path = f"{layer}.bn"
        places[layer] = (layer, layer, layer, [Branch("conv", path, net.get_submodule(path).num_features)])
    for mixed in MIXED:
        module = f"inception{mixed}"
        branches = []
        for part, path in (
            ("1x1", "branch1.bn"),
            ("3x3", "branch2.1.bn"),
            ("5x5", "branch3.1.bn"),  # a 3x3 conv in torchvision, in the 5x5 slot
            ("pool_proj", "branch4.1.bn"),
        ):
            full = f"{module}.{path}"
            branches.append(Branch(part, full, net.get_submodule(full).num_features))
        places[f"mixed{mixed}"] = (module, module, module, branches)
    return build_taps(stages, places)


def _from_state_dict(state: Mapping[str, Any], file: Path) -> TVGoogLeNet:
    """A TVGoogLeNet with `state` loaded (the state dict read from `file`); auxiliary heads dropped."""
    # As torchvision does for its own weights: the published file carries the (untrained)
    # auxiliary heads, which are loaded and then dropped.
    has_aux = any(key.startswith(("aux1.", "aux2.")) for key in state)
    net = TVGoogLeNet(aux_logits=has_aux, init_weights=False)
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise WeightsError(f"{file} is not a torchvision GoogLeNet state dict: {error}") from error
    net.aux_logits, net.aux1, net.aux2 = False, None, None
    return net


def _read_state_dict(file: Path) -> Mapping[str, Any]:
    """The state dict in a local .pth file, or a WeightsError naming the file."""
    if not file.is_file():
        raise WeightsError(f"googlenet state dict not found: {file}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and format errors alike: say which file
        raise WeightsError(f"cannot read googlenet state dict {file}: {error}") from error
    if not isinstance(state, Mapping):
        raise WeightsError(f"{file} does not hold a state dict")
    return state


def describe(preset: nn.Module) -> dict[str, Any]:
    """JSON-able description of a torchvision preset (the weights' transforms()) for runs.preprocessing."""
    return {
        "convention": "torchvision",
        "weights_transforms": f"{PUBLISHED!r}.transforms()",
        "resize_short_side": preset.resize_size,
        "interpolation": preset.interpolation.value,
        "antialias": preset.antialias,
        "center_crop": preset.crop_size,
        "scale": "0..1",
        "channels": "RGB",
        "mean": list(preset.mean),
        "std": list(preset.std),
        # The net re-normalises its input as torchvision's transform_input=True (TVGoogLeNet.renormalise).
        "model_transform_input": True,
    }


@register_model("googlenet")
def googlenet(*, weights: WeightsArg) -> LoadedModel:
    """torchvision googlenet: DEFAULT is GoogLeNet_Weights.IMAGENET1K_V1 (downloaded and cached by
    torchvision), a path is a local state dict (.pth), None is a randomly initialised network."""
    preprocessing = PUBLISHED.transforms()
    if weights is DEFAULT:
        file = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(PUBLISHED.url).path).name
        state = PUBLISHED.get_state_dict(progress=True, check_hash=True)  # downloads once, then cached
        net = _from_state_dict(state, file)
        source, sha = f"torchvision {PUBLISHED!r} ({PUBLISHED.url})", sha256_file(file)
    elif weights is None:
        net = TVGoogLeNet(aux_logits=False, init_weights=True)
        source, sha = "random init (no weights)", "none"
    else:
        file = Path(weights).expanduser()
        net = _from_state_dict(_read_state_dict(file), file)
        source, sha = str(file.resolve()), sha256_file(file)
    net.eval()
    stages = _stages(net)
    return LoadedModel(
        name="googlenet",
        net=net,
        stages=stages,
        taps=_taps(net, stages),
        transform=preprocessing,
        to_rgb255=Unnormalise(preprocessing.mean, preprocessing.std),
        preprocessing=describe(preprocessing),
        weights=source,
        weights_sha256=sha,
        class_names=tuple(PUBLISHED.meta["categories"]),
        class_wnids=tuple(load_imagenet_classes()),
    )
