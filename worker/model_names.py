"""The names of the models the worker runs, torch-free, for the settings and `--help` (the registry in
worker.models holds the same names: a test checks it)."""

from typing import Final

MODEL_NAMES: Final = (
    "alexnet", "bvlc-googlenet", "googlenet", "inception_v3", "resnet101", "resnet152", "resnet18",
    "resnet34", "resnet50", "squeezenet1_1", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16",
    "vgg16_bn", "vgg19", "vgg19_bn",
)  # fmt: skip
