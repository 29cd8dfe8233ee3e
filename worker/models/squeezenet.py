"""squeezenet1_1: DeepScale's Caffe SqueezeNet v1.1 in torchvision's `squeezenet1_1` modules, its Caffe
preprocessing (BVLC's CaffeTransform with a 227 centre crop) and its weights entry SQUEEZENET1_1.

The preprocessing is bvlc-googlenet's, short side 256 and a floored centre crop, at 227: that
reproduces the accuracy of its README on the shared sample's 990 one-per-class photos exactly
(top-1 62.2%, top-5 83.8%). The README words the resize as "256 x 256", but warping the image to
256 x 256 (aspect not kept) gives 65.7% / 86.0% there: its figures were measured with the short
side at 256.

| layer | module (torchvision)         | Caffe layers                         | units | expand1x1 / expand3x3 |
|-------|------------------------------|--------------------------------------|-------|-----------------------|
| conv1 | features.0                   | conv1                                | 64    | (one conv)            |
| fire2 | features.3                   | fire2/expand1x1, fire2/expand3x3     | 128   | 64 / 64               |
| fire3 | features.4                   | fire3/expand1x1, fire3/expand3x3     | 128   | 64 / 64               |
| fire4 | features.6                   | fire4/expand1x1, fire4/expand3x3     | 256   | 128 / 128             |
| fire5 | features.7                   | fire5/expand1x1, fire5/expand3x3     | 256   | 128 / 128             |
| fire6 | features.9                   | fire6/expand1x1, fire6/expand3x3     | 384   | 192 / 192             |
| fire7 | features.10                  | fire7/expand1x1, fire7/expand3x3     | 384   | 192 / 192             |
| fire8 | features.11                  | fire8/expand1x1, fire8/expand3x3     | 512   | 256 / 256             |
| fire9 | features.12                  | fire9/expand1x1, fire9/expand3x3     | 512   | 256 / 256             |

A fire module's pre-ReLU response is its two biased expand convs, concatenated in the module's
order (expand1x1, then expand3x3); each is tapped by a forward hook on the conv, before its
in-place ReLU. Random init (weights=None) is torchvision's own SqueezeNet init of these modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Final

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import SqueezeNet, Weights

from worker.categories import load_imagenet_classes
from worker.models._api import WeightsArg, register_model
from worker.models.bvlc import CaffeTransform
from worker.models.caffe_format import CaffeParams, caffe_weights
from worker.models.taps import Branch, LayerTap, LoadedModel, Stage, build_taps

SQUEEZENET_LAYERS: Final[dict[str, int]] = {
    "conv1": 64, "fire2": 128, "fire3": 128, "fire4": 256, "fire5": 256,
    "fire6": 384, "fire7": 384, "fire8": 512, "fire9": 512,
}  # fmt: skip
# Caffe's fire modules -> their index in torchvision's squeezenet1_1().features (its README).
_FIRES: Final = {"fire2": 3, "fire3": 4, "fire4": 6, "fire5": 7, "fire6": 9, "fire7": 10, "fire8": 11, "fire9": 12}
# A fire module's Caffe layers -> torchvision's Fire attributes.
_FIRE_PARTS: Final = {"squeeze1x1": "squeeze", "expand1x1": "expand1x1", "expand3x3": "expand3x3"}

SQUEEZENET1_1: Final = Weights(
    url="https://github.com/chaosmail/caffejs/tree/gh-pages/models/squeezenet/weights",
    transforms=partial(CaffeTransform, crop=227),
    meta={
        "categories": [c.name for c in load_imagenet_classes().values()],
        "preprocessing": CaffeTransform(crop=227).describe(),
        "recipe": "https://github.com/DeepScale/SqueezeNet/tree/master/SqueezeNet_v1.1",
        "_docs": "DeepScale's SqueezeNet v1.1 (Iandola et al. 2016), trained in Caffe, exported per layer "
        "as raw float32 files; it expects Caffe's preprocessing at 227 x 227.",
    },
)


def _caffe_params(net: SqueezeNet) -> CaffeParams:
    """(Caffe layer name, module) of every layer with weights, in network order."""
    params: list[tuple[str, nn.Conv2d | nn.Linear]] = [("conv1", net.features[0])]
    for fire, index in _FIRES.items():
        block = net.features[index]
        params += [(f"{fire}/{caffe}", getattr(block, module)) for caffe, module in _FIRE_PARTS.items()]
    params.append(("conv10", net.classifier[1]))
    return params


def _stages(net: SqueezeNet) -> tuple[Stage, ...]:
    """SqueezeNet.forward as a chain: each module of `features`, then the classifier."""

    def head(x: Tensor) -> Tensor:
        return torch.flatten(net.classifier(x), 1)  # N x 1000

    return (*((f"features.{i}", module) for i, module in enumerate(net.features)), ("head", head))


def _taps(net: SqueezeNet, stages: Sequence[Stage]) -> Mapping[str, LayerTap]:
    """conv1 and fire2 ... fire9; the block of conv1 is its ReLU, of a fire module the module."""
    conv1 = Branch("conv", "features.0", net.features[0].out_channels)
    places: dict[str, tuple[str, str, str, list[Branch]]] = {"conv1": ("features.0", "features.1", "features.0", [conv1])}
    for fire, index in _FIRES.items():
        path = f"features.{index}"
        branches = [
            Branch(part, f"{path}.{part}", net.get_submodule(f"{path}.{part}").out_channels)
            for part in ("expand1x1", "expand3x3")
        ]
        places[fire] = (path, path, path, branches)
    return build_taps(stages, places, SQUEEZENET_LAYERS)


@register_model("squeezenet1_1")
def squeezenet1_1(*, weights: WeightsArg) -> LoadedModel:
    """squeezenet1_1 from DeepScale's Caffe weights (a folder of per-layer files, e.g.
    ../shared/models/squeezenet1_1), or randomly initialised for None. No downloadable default:
    torchvision's own squeezenet1_1 weights were trained with other preprocessing."""
    net = torchvision.models.squeezenet1_1(weights=None)
    wnids = tuple(load_imagenet_classes())
    source, sha = caffe_weights("squeezenet1_1", _caffe_params(net), weights, wnids)
    net.eval()
    stages = _stages(net)
    transform = SQUEEZENET1_1.transforms()
    return LoadedModel(
        name="squeezenet1_1",
        net=net,
        stages=stages,
        taps=_taps(net, stages),
        transform=transform,
        to_rgb255=transform.to_rgb255,
        from_rgb255=transform.from_rgb255,
        preprocessing=dict(SQUEEZENET1_1.meta["preprocessing"]),
        weights=source,
        weights_sha256=sha,
        class_names=tuple(SQUEEZENET1_1.meta["categories"]),
        class_wnids=wnids,
    )
