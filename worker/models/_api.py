"""Models by name: the builder registry, `get_model`, and what every builder's `weights` argument means."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import torch
from torch import nn

from worker.model_names import FAMILIES, MODEL_NAMES
from worker.models.taps import LoadedModel


class _Default:
    """Sentinel type of `DEFAULT`: "the model's published weights"."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = _Default()
# DEFAULT: the model's published weights; None: random init (as torchvision's weights=None); a path:
# local weights (a Caffe folder of per-layer files, or a torchvision state dict .pth).
WeightsArg = str | os.PathLike[str] | None | _Default
Builder = Callable[..., LoadedModel]  # builder(*, weights: WeightsArg) -> LoadedModel


class WeightsError(ValueError):
    """A weight folder or file that is missing, damaged or does not match its checksums."""


_BUILDERS: dict[str, Builder] = {}
@dataclasses.dataclass
class Weights:
    """A model's weights entry, with torchvision.models.Weights' fields, for the families built without torchvision."""

    url: str
    transforms: Callable[..., Any]
    meta: dict[str, Any]


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make a builder available to `get_model` under `name` (the --model value)."""

    def register(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return register


def list_models() -> tuple[str, ...]:
    """Names of the models get_model builds, sorted."""
    return MODEL_NAMES


def registered_models() -> tuple[str, ...]:
    """Names of the models whose builders have registered so far (those of the families imported), sorted."""
    return tuple(sorted(_BUILDERS))


def get_model(name: str, *, weights: WeightsArg, seed: int | None = None) -> LoadedModel:
    """Build a model by name with its weights, preprocessing and layer taps; the net is in eval mode.

    weights=None is the untrained control: the architecture's own default initialisation, drawn
    under `torch.manual_seed(seed)` (without a seed, from the caller's random state, as torchvision's
    weights=None). The model then records `weights` as "random(seed=N)" (or "random(unseeded)") and
    `weights_sha256` as the digest of the initial parameters (`state_dict_sha256`), so two seeds
    are two configurations of a run.
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    _check_weights_path(weights)  # before the family's import: torchvision's takes 2 s
    importlib.import_module(f"worker.models.{FAMILIES[name]}")  # registers its builders
    builder = _BUILDERS[name]
    if weights is not None:
        if seed is not None:
            raise ValueError("a seed only applies to random weights (weights=None)")
        return builder(weights=weights)
    if seed is None:
        model = builder(weights=None)
    else:
        with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
            torch.manual_seed(seed)
            model = builder(weights=None)
    label = "random(unseeded)" if seed is None else f"random(seed={seed})"
    return dataclasses.replace(model, weights=label, weights_sha256=state_dict_sha256(model.net))


def _check_weights_path(weights: WeightsArg) -> None:
    """A WeightsError when `weights` is written as a path (a separator, or a leading . or ~) and nothing is there.

    Each family's own "not found" would name what it expected (a state dict for googlenet, the model --model auto
    picks for anything but a folder), which misleads a user whose Caffe folder's path is simply mistyped.
    """
    if weights is DEFAULT or weights is None:
        return
    text = os.fspath(weights)
    looks_like_path = "/" in text or os.sep in text or text.startswith((".", "~"))
    if looks_like_path and not Path(text).expanduser().exists():
        raise WeightsError(f"weights {text}: no such file or folder")


def recorded_weights(label: str) -> tuple[WeightsArg, int | None]:
    """The (weights, seed) arguments of get_model that rebuild a model from the `weights` it recorded: its source
    for a folder or file, DEFAULT for torchvision's published weights (tv_common: "torchvision ..."), (None, N)
    for get_model's "random(seed=N)"; a ValueError for "random(unseeded)", which nothing can rebuild."""
    if label.startswith("random(seed="):
        return None, int(label.removeprefix("random(seed=").rstrip(")"))
    if label.startswith("random"):
        raise ValueError(f"{label}: an unseeded random init cannot be rebuilt")
    if label.startswith("torchvision "):
        return DEFAULT, None
    return label, None


def state_dict_sha256(net: nn.Module) -> str:
    """Hex sha256 of every state-dict tensor's bytes (CPU, contiguous), in state-dict order."""
    digest = hashlib.sha256()
    for tensor in net.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
