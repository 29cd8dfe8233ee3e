"""The models by name, in torchvision's manner: `get_model(name, weights=..., seed=...)`, weights
entries that carry their transforms and metadata, and each model's documented layer taps.

- `_api`: the registry, `get_model`, DEFAULT, what a `weights` argument means and the seeded random init.
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

from typing import Final

from worker.models._api import (
    DEFAULT,
    WeightsArg,
    WeightsError,
    get_model,
    list_models,
    recorded_weights,
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
from worker.models.squeezenet import SQUEEZENET1_1, SQUEEZENET_LAYERS
from worker.models.taps import Branch, LayerTap, LoadedModel
from worker.models.tv_common import InputRenormalisation, Unnormalise
from worker.models.tv_googlenet import TVGoogLeNet
from worker.models.tv_inception3 import TVInception3
from worker.models.tv_resnet import ResidualAdd
from worker.models.tv_vgg import VGG_NAMES

MODEL_NAMES: Final = list_models()  # every builder has registered by now: the imports above

__all__ = [
    "BVLC_GOOGLENET",
    "DEFAULT",
    "GOOGLENET_LAYERS",
    "MODEL_NAMES",
    "SQUEEZENET1_1",
    "SQUEEZENET_LAYERS",
    "VGG_NAMES",
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
    "recorded_weights",
    "state_dict_sha256",
]
