"""The models the worker runs, torch-free, for the settings and `--help`, with the module of worker.models that
builds each (its family): get_model imports a family on first use, and the builders there register these same
names (a test checks it)."""

from typing import Final

# name -> family module. A family is imported only when one of its models is asked for: the torchvision families
# cost 2 s of torchvision's import, which bvlc-googlenet does not need.
FAMILIES: Final[dict[str, str]] = {
    "bvlc-googlenet": "bvlc", "squeezenet1_1": "squeezenet", "googlenet": "tv_googlenet",
    "inception_v3": "tv_inception3", "alexnet": "tv_vgg",
    **{f"vgg{depth}{bn}": "tv_vgg" for depth in (11, 13, 16, 19) for bn in ("", "_bn")},
    **{f"resnet{depth}": "tv_resnet" for depth in (18, 34, 50, 101, 152)},
}  # fmt: skip

MODEL_NAMES: Final = tuple(sorted(FAMILIES))
