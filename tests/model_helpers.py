"""Helpers for the model tests: each layer's post-ReLU output, to check the captured pre-ReLU maps against."""

from __future__ import annotations

import torch
from torch import Tensor

from worker.models import LoadedModel


def block_outputs(model: LoadedModel, x: Tensor) -> dict[str, Tensor]:
    """Every layer's post-ReLU output, from hooks on the blocks (conv+ReLU / inception)."""
    outputs: dict[str, Tensor] = {}
    handles = [
        model.net.get_submodule(tap.block).register_forward_hook(
            lambda module, inputs, output, layer=layer: outputs.__setitem__(layer, output.clone())
        )
        for layer, tap in model.taps.items()
    ]
    try:
        with torch.inference_mode():
            model.net(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs
