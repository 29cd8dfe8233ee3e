"""The ResNet family (resnet18, 34, 50, 101, 152): torchvision's networks, with each block's residual
sum made a module so that it can be tapped before the block's final ReLU.

Layers: every residual block, named after its torchvision path with `_` for `.` (`layer1_0` is
`layer1.0`); its response is the block's output after the residual add and before the final ReLU.
torchvision's blocks do `out += identity; out = self.relu(out)` with one ReLU module called two
(BasicBlock) or three (Bottleneck) times, so neither a hook on the block (post-ReLU) nor on its
`relu` (which call?) says where the sum is. TappedBasicBlock and TappedBottleneck are torchvision's
blocks with the same forward written with a `residual` module (ResidualAdd, no parameters) for the
add; a forward hook on `layerN.M.residual` reads the sum before the in-place ReLU. The state dict
keys are torchvision's, and a test checks that the logits equal torchvision's own network's.
resnet50: layer1_0 ... layer1_2 (256 units), layer2_0 ... layer2_3 (512), layer3_0 ... layer3_5
(1024), layer4_0 ... layer4_2 (2048).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum, get_model_weights
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from worker.models._api import WeightsArg, register_model
from worker.models.taps import Branch, LayerTap, LoadedModel, Stage, build_taps
from worker.models.tv_common import (
    State,
    load_state,
    torchvision_model,
    torchvision_weights,
)


class ResidualAdd(nn.Module):
    """out + identity, as a module so that a forward hook sees the residual sum."""

    def forward(self, out: Tensor, identity: Tensor) -> Tensor:
        return out + identity


class TappedBasicBlock(BasicBlock):
    """torchvision's BasicBlock; the residual add is the module `residual`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.residual = ResidualAdd()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(out, identity))


class TappedBottleneck(Bottleneck):
    """torchvision's Bottleneck; the residual add is the module `residual`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.residual = ResidualAdd()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(out, identity))


# torchvision's block type and blocks per stage of each depth (torchvision.models.resnet).
ARCHITECTURES: Final = {
    "resnet18": (TappedBasicBlock, (2, 2, 2, 2)),
    "resnet34": (TappedBasicBlock, (3, 4, 6, 3)),
    "resnet50": (TappedBottleneck, (3, 4, 6, 3)),
    "resnet101": (TappedBottleneck, (3, 4, 23, 3)),
    "resnet152": (TappedBottleneck, (3, 8, 36, 3)),
}


def _blocks(net: ResNet) -> list[str]:
    """Dotted paths of every residual block, in depth order: layer1.0, layer1.1, ..."""
    return [f"layer{stage}.{i}" for stage in range(1, 5) for i in range(len(net.get_submodule(f"layer{stage}")))]


def _stages(net: ResNet) -> tuple[Stage, ...]:
    """ResNet._forward_impl as a chain, one stage per residual block."""

    def head(x: Tensor) -> Tensor:
        return net.fc(torch.flatten(net.avgpool(x), 1))  # N x 1000

    stem = tuple((name, net.get_submodule(name)) for name in ("conv1", "bn1", "relu", "maxpool"))
    return (*stem, *((block, net.get_submodule(block)) for block in _blocks(net)), ("head", head))


def _taps(net: ResNet, stages: Sequence[Stage]) -> Mapping[str, LayerTap]:
    """One layer per residual block, tapped at its `residual` sum."""
    places: dict[str, tuple[str, str, str, list[Branch]]] = {}
    for block in _blocks(net):
        module = net.get_submodule(block)
        last_bn = module.bn3 if isinstance(module, Bottleneck) else module.bn2
        branch = Branch("residual", f"{block}.residual", last_bn.num_features)
        places[block.replace(".", "_")] = (block, block, block, [branch])
    return build_taps(stages, places)


def _register(name: str) -> None:
    block, layers = ARCHITECTURES[name]

    def resnet(*, weights: WeightsArg) -> LoadedModel:
        published: WeightsEnum = get_model_weights(name).DEFAULT

        def load(state: State | None, file: Path | None) -> nn.Module:
            net = ResNet(block, list(layers))  # torchvision's init when no state is loaded
            if state is not None:
                load_state(net, state, file, name)
            return net

        net, source, sha = torchvision_weights(weights, published, name, load)
        stages = _stages(net)
        return torchvision_model(name, net, stages, _taps(net, stages), published, source, sha, transform_input=False)

    resnet.__doc__ = (
        f"torchvision {name}: DEFAULT is {get_model_weights(name).DEFAULT!r}, a path a local .pth, None random init."
    )
    register_model(name)(resnet)


for _name in ARCHITECTURES:
    _register(_name)
