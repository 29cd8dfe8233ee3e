"""alexnet and the VGG family (vgg11 ... vgg19, with or without batch norm): torchvision's networks,
whose `features` is a plain chain of conv (+ batch norm) + in-place ReLU and max pools.

Layers: every module right before a ReLU in `features`: the biased conv, or its batch norm in the
_bn variants. Its forward hook reads the output before the in-place ReLU overwrites it.
- alexnet: conv1 ... conv5 (`features.0`, `.3`, `.6`, `.8`, `.10`; 64, 192, 384, 256, 256 units;
  torchvision's AlexNet is the one-GPU variant of "One weird trick", not Caffe's 96-256-384-384-256).
- vggN: convB_I, the I-th conv of block B (blocks end at each max pool), e.g. vgg16: conv1_1,
  conv1_2, conv2_1, conv2_2, conv3_1 ... conv3_3, conv4_1 ... conv4_3, conv5_1 ... conv5_3
  (64, 64, 128, 128, 256 x 3, 512 x 6 units).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import WeightsEnum, get_model_weights

from worker.models._api import WeightsArg, register_model
from worker.models.taps import Branch, LayerTap, LoadedModel, Stage, build_taps
from worker.models.tv_common import (
    State,
    load_state,
    torchvision_model,
    torchvision_weights,
)

VGG_NAMES = tuple(f"vgg{depth}{bn}" for depth in (11, 13, 16, 19) for bn in ("", "_bn"))


def _stages(net: nn.Module) -> tuple[Stage, ...]:
    """forward as a chain: each module of `features`, the average pool, then the classifier."""

    def head(x: Tensor) -> Tensor:
        return net.classifier(torch.flatten(x, 1))  # N x 1000

    features = tuple((f"features.{i}", module) for i, module in enumerate(net.features))
    return (*features, ("avgpool", net.avgpool), ("head", head))


def _layer_names(features: nn.Sequential, numbered_by_block: bool) -> list[tuple[str, int]]:
    """(layer name, index of the module before the ReLU) for every ReLU of `features`, in order."""
    names: list[tuple[str, int]] = []
    block, within = 1, 0
    for index, module in enumerate(features):
        if isinstance(module, nn.MaxPool2d):
            block, within = block + 1, 0
        elif isinstance(module, nn.ReLU):
            within += 1
            name = f"conv{block}_{within}" if numbered_by_block else f"conv{len(names) + 1}"
            names.append((name, index - 1))
    return names


def _taps(net: nn.Module, stages: Sequence[Stage], numbered_by_block: bool) -> Mapping[str, LayerTap]:
    """One layer per ReLU of `features`: the module before it is tapped, the ReLU is the block."""
    places: dict[str, tuple[str, str, str, list[Branch]]] = {}
    for name, index in _layer_names(net.features, numbered_by_block):
        conv = next(m for m in reversed(net.features[: index + 1]) if isinstance(m, nn.Conv2d))
        branch = Branch("conv", f"features.{index}", conv.out_channels)
        places[name] = (f"features.{index}", f"features.{index + 1}", f"features.{index}", [branch])
    return build_taps(stages, places)


def _loaded(name: str, weights: WeightsArg, numbered_by_block: bool) -> LoadedModel:
    """A torchvision alexnet / vgg by name, with the transforms of its published DEFAULT weights."""
    published: WeightsEnum = get_model_weights(name).DEFAULT

    def load(state: State | None, file: Path | None) -> nn.Module:
        net = torchvision.models.get_model(name, weights=None)
        if state is not None:
            load_state(net, state, file, name)
        return net

    net, source, sha = torchvision_weights(weights, published, name, load)
    stages = _stages(net)
    return torchvision_model(name, net, stages, _taps(net, stages, numbered_by_block), published, source, sha, transform_input=False)


@register_model("alexnet")
def alexnet(*, weights: WeightsArg) -> LoadedModel:
    """torchvision alexnet: DEFAULT is AlexNet_Weights.IMAGENET1K_V1, a path a local .pth, None random init."""
    return _loaded("alexnet", weights, numbered_by_block=False)


def _register_vgg(name: str) -> None:
    def vgg(*, weights: WeightsArg) -> LoadedModel:
        return _loaded(name, weights, numbered_by_block=True)

    vgg.__doc__ = f"torchvision {name}: DEFAULT is its published weights, a path a local .pth, None random init."
    register_model(name)(vgg)


for _name in VGG_NAMES:
    _register_vgg(_name)
