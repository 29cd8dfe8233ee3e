"""The two GoogLeNets by name, in torchvision's manner: `get_model(name, weights=...)`, weights entries
that carry their transforms and metadata, and the study's layer taps.

- `_api`: the registry, `get_model`, DEFAULT and what a `weights` argument means.
- `layers`: the study's 12 layers (GOOGLENET_LAYERS) and where each model keeps them.
- `taps`: LayerTap, Branch and LoadedModel, a network ready to run.
- `bvlc`: bvlc-googlenet, the Caffe network, its preprocessing and the BVLC_GOOGLENET weights entry.
- `caffe_format`: reading and verifying Caffe's per-layer float32 weight files.
- `tv_googlenet`: googlenet, torchvision's network with GoogLeNet_Weights.IMAGENET1K_V1.
"""

from typing import Final

from worker.models._api import DEFAULT, WeightsArg, WeightsError, get_model, list_models
from worker.models.bvlc import BVLC_GOOGLENET, BVLCGoogLeNet, CaffeInception, CaffeLRN, CaffeTransform
from worker.models.layers import GOOGLENET_LAYERS
from worker.models.taps import Branch, LayerTap, LoadedModel
from worker.models.tv_googlenet import InputRenormalisation, TVGoogLeNet, Unnormalise

MODEL_NAMES: Final = list_models()  # every builder has registered by now: the imports above

__all__ = [
    "BVLC_GOOGLENET",
    "DEFAULT",
    "GOOGLENET_LAYERS",
    "MODEL_NAMES",
    "BVLCGoogLeNet",
    "Branch",
    "CaffeInception",
    "CaffeLRN",
    "CaffeTransform",
    "InputRenormalisation",
    "LayerTap",
    "LoadedModel",
    "TVGoogLeNet",
    "Unnormalise",
    "WeightsArg",
    "WeightsError",
    "get_model",
]
