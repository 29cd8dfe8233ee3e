"""The models by name, in torchvision's manner: `get_model(name, weights=..., seed=...)`, weights
entries that carry their transforms and metadata, and each model's documented layer taps.

- `_api`: the registry, `get_model` (which imports a model's family on first use), DEFAULT, what a `weights`
  argument means, the seeded random init, and `Weights` for the families built without torchvision.
- `layers`: GoogLeNet's 12 study layers (GOOGLENET_LAYERS) and where both GoogLeNets keep them.
- `taps`: LayerTap, Branch and LoadedModel, a network ready to run.
- `caffe_format`: reading and verifying Caffe's per-layer float32 weight files.
- `bvlc`: bvlc-googlenet, the Caffe network, its preprocessing (CaffeTransform) and the BVLC_GOOGLENET entry.
- `squeezenet`: squeezenet1_1, DeepScale's Caffe SqueezeNet v1.1 in torchvision's modules (SQUEEZENET1_1).
- `tv_common`: what the torchvision classifiers share (weights argument, transforms, re-normalisation).
- `tv_googlenet`: googlenet, torchvision's network with GoogLeNet_Weights.IMAGENET1K_V1.
- `tv_vgg`: alexnet and vgg11 ... vgg19 (and _bn): one layer per conv, before its ReLU.
- `tv_resnet`: resnet18 ... resnet152: one layer per residual block, the sum before its ReLU.
- `tv_inception3`: inception_v3: Mixed_5b ... Mixed_7c, concatenated branches before their ReLUs.
"""

import importlib
from typing import Any, Final

from worker.models._api import (
    DEFAULT,
    Weights,
    WeightsArg,
    WeightsError,
    get_model,
    list_models,
    recorded_weights,
    registered_models,
    state_dict_sha256,
)
from worker.models.bvlc import (
    BVLC_GOOGLENET,
    BVLCGoogLeNet,
    CaffeInception,
    CaffeLRN,
    CaffeTransform,
)
from worker.models.layers import GOOGLENET_LAYERS
from worker.models.taps import Branch, LayerTap, LoadedModel

MODEL_NAMES: Final = list_models()

# The torchvision families' names, imported on first use (torchvision's import costs 2 s that bvlc-googlenet and
# the server never need): name -> its module.
_LAZY: Final = {
    "SQUEEZENET1_1": "squeezenet", "SQUEEZENET_LAYERS": "squeezenet", "InputRenormalisation": "tv_common",
    "Unnormalise": "tv_common", "TVGoogLeNet": "tv_googlenet", "TVInception3": "tv_inception3",
    "ResidualAdd": "tv_resnet", "VGG_NAMES": "tv_vgg",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"worker.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BVLC_GOOGLENET",
    "DEFAULT",
    "GOOGLENET_LAYERS",
    "MODEL_NAMES",
    "SQUEEZENET1_1",
    "SQUEEZENET_LAYERS",
    "VGG_NAMES",
    "Weights",
    "BVLCGoogLeNet",
    "Branch",
    "CaffeInception",
    "CaffeLRN",
    "CaffeTransform",
    "InputRenormalisation",
    "LayerTap",
    "LoadedModel",
    "ResidualAdd",
    "TVGoogLeNet",
    "TVInception3",
    "Unnormalise",
    "WeightsArg",
    "WeightsError",
    "get_model",
    "list_models",
    "registered_models",
    "recorded_weights",
    "state_dict_sha256",
]
