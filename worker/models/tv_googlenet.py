"""googlenet: torchvision's GoogLeNet (batch norm; its own training), with its input re-normalisation
as an explicit first stage, and its published weights entry `GoogLeNet_Weights.IMAGENET1K_V1`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import torch
import torchvision
from torch import Tensor
from torchvision.models import GoogLeNet_Weights, GoogLeNetOutputs

from worker.models._api import WeightsArg, register_model
from worker.models.layers import GOOGLENET_LAYERS, MIXED
from worker.models.taps import Branch, LayerTap, LoadedModel, Stage, build_taps
from worker.models.tv_common import (
    InputRenormalisation,
    State,
    load_state,
    torchvision_model,
    torchvision_weights,
)

PUBLISHED: Final = GoogLeNet_Weights.IMAGENET1K_V1


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
    return build_taps(stages, places, GOOGLENET_LAYERS)


def _load(state: State | None, file: Path | None) -> TVGoogLeNet:
    """A TVGoogLeNet: torchvision's init for no state, else `state` loaded; auxiliary heads dropped."""
    if state is None:
        return TVGoogLeNet(aux_logits=False, init_weights=True)
    # As torchvision does for its own weights: the published file carries the (untrained)
    # auxiliary heads, which are loaded and then dropped.
    has_aux = any(key.startswith(("aux1.", "aux2.")) for key in state)
    net = TVGoogLeNet(aux_logits=has_aux, init_weights=False)
    load_state(net, state, file, "GoogLeNet")
    net.aux_logits, net.aux1, net.aux2 = False, None, None
    return net


@register_model("googlenet")
def googlenet(*, weights: WeightsArg) -> LoadedModel:
    """torchvision googlenet: DEFAULT is GoogLeNet_Weights.IMAGENET1K_V1 (downloaded and cached by
    torchvision), a path is a local state dict (.pth), None is a randomly initialised network."""
    net, source, sha = torchvision_weights(weights, PUBLISHED, "googlenet", _load)
    stages = _stages(net)
    return torchvision_model("googlenet", net, stages, _taps(net, stages), PUBLISHED, source, sha, transform_input=True)
