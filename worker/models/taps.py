"""Where a model's layers live in its network (LayerTap, Branch), and LoadedModel, a network ready to run."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from PIL import Image
from torch import Tensor, nn


@dataclass(frozen=True)
class Branch:
    """One slice of a layer's channels and the module whose output is its pre-ReLU map."""

    name: str  # '1x1' | '3x3' | '5x5' | 'pool_proj' | 'conv'
    module: str  # dotted path in LoadedModel.net
    channels: int


@dataclass(frozen=True)
class LayerTap:
    """Where a study layer lives in a model, and when the forward pass has computed it."""

    layer: str  # the study's name, e.g. 'mixed4c'
    module: str  # the model's own name for it, e.g. 'inception_4c/output' or 'inception4c'
    block: str  # dotted path of the module whose output is the layer's post-ReLU response
    stage: int  # index into LoadedModel.stages after which the layer is complete
    branches: tuple[Branch, ...]

    @property
    def units(self) -> int:
        """Number of channels (units) of the layer."""
        return sum(b.channels for b in self.branches)


Stage = tuple[str, Callable[[Tensor], Tensor]]
# What a model says about each of its layers, in depth order: (its own module name, block path,
# stage name, branches).
LayerPlaces = Mapping[str, tuple[str, str, str, Sequence[Branch]]]


def build_taps(
    stages: Sequence[Stage], places: LayerPlaces, expected: Mapping[str, int] | None = None
) -> Mapping[str, LayerTap]:
    """LayerTaps of a model's layers, in depth order; checked against `expected` unit counts if given."""
    index = {name: i for i, (name, _) in enumerate(stages)}
    taps = {}
    for layer, (module, block, stage, branches) in places.items():
        taps[layer] = LayerTap(layer, module, block, index[stage], tuple(branches))
    # The expected table (e.g. GOOGLENET_LAYERS) is the authority; a mismatch is a bug in a model's code.
    assert expected is None or {layer: tap.units for layer, tap in taps.items()} == dict(expected), places
    depth = [tap.stage for tap in taps.values()]
    assert depth == sorted(depth), "layers must be listed in the order the forward pass completes them"
    return MappingProxyType(taps)


@dataclass(frozen=True)
class LoadedModel:
    """A network ready to run, with everything a run must record about it."""

    name: str
    net: nn.Module  # in eval mode
    # net.forward decomposed into a chain: applying the stages in order gives the logits, so a
    # caller can stop after the stage that completes the deepest layer it needs.
    stages: tuple[Stage, ...]
    taps: Mapping[str, LayerTap]  # every layer of the model's documented set, in depth order
    # RGB PIL image, or a uint8 3 x H x W RGB tensor on any device (--decode gpu) -> CHW float32 tensor
    transform: Callable[[Image.Image | Tensor], Tensor]
    # A batch of `transform` outputs (N x 3 x H x W) -> the crop the network saw, as RGB on 0..255:
    # the transform's normalisation undone, so no image is decoded twice (worker.image_stats uses it).
    to_rgb255: Callable[[Tensor], Tensor]
    # Its inverse, without rounding and differentiable: N x 3 x H x W RGB on 0..255 -> the network's input
    # (feature visualisation optimises an RGB image, worker.feature_vis).
    from_rgb255: Callable[[Tensor], Tensor]
    preprocessing: dict[str, Any]  # JSON-able description of `transform`
    weights: str  # where the weights came from
    weights_sha256: str  # the weight file's sha256 (see caffe_format for Caffe folders; state_dict_sha256 for random)
    class_names: tuple[str, ...]  # 1000 ImageNet classes, index = logit index
    class_wnids: tuple[str, ...] = field(default=())  # WNID of each class, same order

    def select_layers(self, names: Sequence[str]) -> list[str]:
        """Validate layer names; return them unique, in depth order. No names means every layer."""
        if isinstance(names, str):
            names = [names]
        unknown = [name for name in names if name not in self.taps]
        if unknown:
            raise ValueError(
                f"unknown layer(s) {', '.join(map(repr, unknown))}; valid layers are: {', '.join(self.taps)}"
            )
        wanted = set(names)
        return [name for name in self.taps if not wanted or name in wanted]

    def branch_layout(self, layer: str) -> list[tuple[str, int]]:
        """(branch name, channels) of a layer, in channel order."""
        return [(b.name, b.channels) for b in self.taps[self.select_layers([layer])[0]].branches]

    def unit_branches(self, layer: str) -> list[str]:
        """Branch name of every unit (channel) of a layer, by unit index."""
        return [name for name, channels in self.branch_layout(layer) for _ in range(channels)]

    def module_name(self, layer: str) -> str:
        """The model's own name for a study layer."""
        return self.taps[self.select_layers([layer])[0]].module

    def preprocessing_json(self) -> str:
        """`preprocessing` as canonical JSON, as stored in runs.preprocessing."""
        return json.dumps(self.preprocessing, sort_keys=True)
