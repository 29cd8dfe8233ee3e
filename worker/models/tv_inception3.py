"""inception_v3: torchvision's Inception3 with its input re-normalisation as an explicit first stage
(as googlenet), and its published weights Inception_V3_Weights.IMAGENET1K_V1 (299 x 299 input).

Layers: the eleven mixed blocks Mixed_5b ... Mixed_7c, named as in torchvision. A block's response
is the concatenation, in the block's torch.cat order, of its branches' last BasicConv2d before its
ReLU: the batch-norm output (`<branch>.bn`), read in a forward hook before F.relu(inplace=True)
overwrites it. InceptionE (Mixed_7b, 7c) splits two branches in two (3x3_2a / 3x3_2b,
3x3dbl_3a / 3x3dbl_3b); each part is its own branch, in cat order. Mixed_6a and Mixed_7a also
concatenate a max pool of their input, which has no conv and no ReLU of its own (it passes the
previous block's rectified channels through): those layers hold their conv branches only, the
first 480 of Mixed_6a's 768 channels and the first 512 of Mixed_7a's 1280.

| layer    | units | branches (cat order)                                                              |
|----------|-------|-----------------------------------------------------------------------------------|
| Mixed_5b | 256   | branch1x1 64, branch5x5_2 64, branch3x3dbl_3 96, branch_pool 32                   |
| Mixed_5c | 288   | branch1x1 64, branch5x5_2 64, branch3x3dbl_3 96, branch_pool 64                   |
| Mixed_5d | 288   | branch1x1 64, branch5x5_2 64, branch3x3dbl_3 96, branch_pool 64                   |
| Mixed_6a | 480   | branch3x3 384, branch3x3dbl_3 96                                                  |
| Mixed_6b | 768   | branch1x1 192, branch7x7_3 192, branch7x7dbl_5 192, branch_pool 192               |
| Mixed_6c | 768   | (as Mixed_6b)                                                                     |
| Mixed_6d | 768   | (as Mixed_6b)                                                                     |
| Mixed_6e | 768   | (as Mixed_6b)                                                                     |
| Mixed_7a | 512   | branch3x3_2 320, branch7x7x3_4 192                                                |
| Mixed_7b | 2048  | branch1x1 320, branch3x3_2a/2b 384 + 384, branch3x3dbl_3a/3b 384 + 384, branch_pool 192 |
| Mixed_7c | 2048  | (as Mixed_7b)                                                                     |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import torch
from torch import Tensor, nn
from torchvision.models import Inception3, Inception_V3_Weights, InceptionOutputs
from torchvision.models.inception import (
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
)

from worker.models._api import WeightsArg, register_model
from worker.models.taps import Branch, LayerTap, LoadedModel, Stage, build_taps
from worker.models.tv_common import (
    InputRenormalisation,
    State,
    load_state,
    torchvision_model,
    torchvision_weights,
)

PUBLISHED: Final = Inception_V3_Weights.IMAGENET1K_V1

MIXED_BLOCKS: Final = (
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c",
)  # fmt: skip
# The last BasicConv2d of every conv branch of each block type, in its torch.cat order.
_BRANCHES: Final[dict[type[nn.Module], tuple[str, ...]]] = {
    InceptionA: ("branch1x1", "branch5x5_2", "branch3x3dbl_3", "branch_pool"),
    InceptionB: ("branch3x3", "branch3x3dbl_3"),  # then a max pool of the input: not a layer unit
    InceptionC: ("branch1x1", "branch7x7_3", "branch7x7dbl_5", "branch_pool"),
    InceptionD: ("branch3x3_2", "branch7x7x3_4"),  # then a max pool of the input: not a layer unit
    InceptionE: ("branch1x1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"),
}
_STEM: Final = (
    "renormalise", "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
    "Conv2d_4a_3x3", "maxpool2",
)  # fmt: skip


class TVInception3(Inception3):
    """torchvision's Inception3 built with transform_input=False, its re-normalisation done by an
    explicit first module, `renormalise` (as TVGoogLeNet); the state dict is torchvision's."""

    def __init__(self, *, aux_logits: bool, init_weights: bool) -> None:
        super().__init__(aux_logits=aux_logits, transform_input=False, init_weights=init_weights)
        preset = PUBLISHED.transforms()
        self.renormalise = InputRenormalisation(preset.mean, preset.std)

    def forward(self, x: Tensor) -> InceptionOutputs | Tensor:
        return super().forward(self.renormalise(x))  # N x 3 x 299 x 299 in [-1, 1] scale


def _stages(net: TVInception3) -> tuple[Stage, ...]:
    """TVInception3.forward in eval mode as a chain (the aux head only runs in training)."""

    def head(x: Tensor) -> Tensor:
        return net.fc(torch.flatten(net.dropout(net.avgpool(x)), 1))  # N x 1000

    modules = (*_STEM, *MIXED_BLOCKS)
    return (*((name, net.get_submodule(name)) for name in modules), ("head", head))


def _taps(net: TVInception3, stages: Sequence[Stage]) -> Mapping[str, LayerTap]:
    """The eleven mixed blocks; taps are each conv branch's last BasicConv2d.bn."""
    places: dict[str, tuple[str, str, str, list[Branch]]] = {}
    for block in MIXED_BLOCKS:
        parts = _BRANCHES[type(net.get_submodule(block))]
        branches = [
            Branch(part, f"{block}.{part}.bn", net.get_submodule(f"{block}.{part}.bn").num_features) for part in parts
        ]
        places[block] = (block, block, block, branches)
    return build_taps(stages, places)


def _load(state: State | None, file: Path | None) -> TVInception3:
    """A TVInception3: torchvision's init for no state, else `state` loaded; the aux head dropped."""
    if state is None:
        return TVInception3(aux_logits=False, init_weights=True)
    # The published file carries the auxiliary head (as googlenet's): loaded, then dropped.
    has_aux = any(key.startswith("AuxLogits.") for key in state)
    net = TVInception3(aux_logits=has_aux, init_weights=False)
    load_state(net, state, file, "Inception3")
    net.aux_logits, net.AuxLogits = False, None
    return net


@register_model("inception_v3")
def inception_v3(*, weights: WeightsArg) -> LoadedModel:
    """torchvision inception_v3: DEFAULT is Inception_V3_Weights.IMAGENET1K_V1 (downloaded and cached
    by torchvision), a path is a local state dict (.pth), None is a randomly initialised network."""
    net, source, sha = torchvision_weights(weights, PUBLISHED, "inception_v3", _load)
    stages = _stages(net)
    return torchvision_model("inception_v3", net, stages, _taps(net, stages), PUBLISHED, source, sha, transform_input=True)
