"""Models by name: the builder registry, `get_model`, and what every builder's `weights` argument means."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

from worker.models.taps import LoadedModel


class _Default:
    """Sentinel type of `DEFAULT`: "the model's published weights"."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = _Default()
# DEFAULT: the model's published weights; None: random init (as torchvision's weights=None); a path:
# local weights (a BVLC folder of per-layer files, or a googlenet state dict).
WeightsArg = str | os.PathLike[str] | None | _Default
Builder = Callable[..., LoadedModel]  # builder(*, weights: WeightsArg) -> LoadedModel


class WeightsError(ValueError):
    """A weight folder or file that is missing, damaged or does not match its checksums."""


_BUILDERS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make a builder available to `get_model` under `name` (the --model value)."""

    def register(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return register


def list_models() -> tuple[str, ...]:
    """Names of the registered models, sorted."""
    return tuple(sorted(_BUILDERS))


def get_model(name: str, *, weights: WeightsArg) -> LoadedModel:
    """Build a model by name with its weights, preprocessing and layer taps; the net is in eval mode."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}") from None
    return builder(weights=weights)


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
