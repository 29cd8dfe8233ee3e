"""Ablation: the network's output with groups of a layer's units silenced, the early part run once per batch.

An ablated unit's output after its ReLU is zero at every position. The layer's post-ReLU output is kept once
per image batch (the network's early part runs once) and, for each group, multiplied by the group's 0/1 mask
and run through the rest of the network; every group of a batch goes through in one stacked pass. The
baseline (nothing ablated) feeds the kept tensor on unchanged, so its logits are the plain network's, bit for
bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from worker.models import LoadedModel

# Images times groups per stacked pass of the network's late part: large enough for the CPU's matrix kernels,
# small enough to keep the stacked maps (mixed4c: 400 KB an image) in a few hundred MB.
STACK = 256


class Ablator:
    """Runs a LoadedModel with groups of one layer's units ablated; use as a context manager (it may hold a hook)."""

    def __init__(self, model: LoadedModel, layer: str, device: torch.device) -> None:
        self.model, self.device = model, device
        tap = model.taps[model.select_layers([layer])[0]]
        self.units = tap.units
        stage_name = model.stages[tap.stage][0]
        self._mask: Tensor | None = None
        self._handle = None
        if stage_name == tap.block:
            # The stage that completes the layer ends with its post-ReLU output: keep that, ablate after it.
            self._early, self._late = model.stages[: tap.stage + 1], model.stages[tap.stage + 1:]
        else:
            # The layer's block sits inside a stage: keep that stage's input, and ablate in a hook on the block.
            self._early, self._late = model.stages[: tap.stage], model.stages[tap.stage:]
            self._handle = model.net.get_submodule(tap.block).register_forward_hook(self._hook)
        model.net.to(device)

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
        if self._mask is None:
            return None
        return output * self._mask.repeat_interleave(output.shape[0] // self._mask.shape[0], dim=0)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> Ablator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def masks(self, groups: Sequence[Sequence[int]]) -> Tensor:
        """[G, units, 1, 1] float masks: 0 for the group's units, 1 elsewhere."""
        masks = torch.ones(len(groups), self.units, 1, 1, device=self.device)
        for g, units in enumerate(groups):
            masks[g, list(units)] = 0.0
        return masks

    @torch.no_grad()
    def early(self, pixels: Tensor) -> Tensor:
        """The kept tensor of an image batch: the early part of the network, run once."""
        x = pixels.to(self.device)
        for _, stage in self._early:
            x = stage(x)
        return x

    @torch.no_grad()
    def late(self, kept: Tensor, masks: Tensor | None) -> Tensor:
        """Logits [G, N, classes] for each mask (None: the baseline alone, [1, N, classes])."""
        n = kept.shape[0]
        if masks is None:
            x = kept
        elif self._handle is not None:
            self._mask = masks
            x = kept.repeat(masks.shape[0], *([1] * (kept.dim() - 1)))
        else:
            x = (kept.unsqueeze(0) * masks.unsqueeze(1)).flatten(0, 1)
        try:
            for _, stage in self._late:
                x = stage(x)
        finally:
            self._mask = None
        return x.view(-1, n, x.shape[-1])

    def logits(self, kept: Tensor, groups: Sequence[Sequence[int] | None]) -> Tensor:
        """Logits [G, N, classes] for each group (None: nothing ablated), in stacks of at most STACK images."""
        ablated = [g for g in groups if g is not None]
        per_stack = max(1, STACK // kept.shape[0])
        parts = [self.late(kept, self.masks(ablated[s: s + per_stack])) for s in range(0, len(ablated), per_stack)]
        stacked = iter(torch.cat(parts).unbind(0)) if parts else iter(())
        base = self.late(kept, None)[0] if any(g is None for g in groups) else None
        return torch.stack([base if g is None else next(stacked) for g in groups])  # type: ignore[misc]


@dataclass
class Tally:
    """Per group and class: images, top-1 and top-5 hits, and the summed probability of the true class."""

    groups: int
    classes: int
    n: np.ndarray = field(init=False)
    top1: np.ndarray = field(init=False)
    top5: np.ndarray = field(init=False)
    p_true: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.n = np.zeros(self.classes, dtype=np.int64)
        self.top1 = np.zeros((self.groups, self.classes), dtype=np.int64)
        self.top5 = np.zeros((self.groups, self.classes), dtype=np.int64)
        self.p_true = np.zeros((self.groups, self.classes), dtype=np.float64)

    def add(self, logits: Tensor, labels: Tensor) -> None:
        """Count one batch: logits [G, N, classes], labels [N] (class indices)."""
        labels = labels.to(logits.device)
        probs = torch.softmax(logits.float(), dim=-1)
        top5 = logits.topk(5, dim=-1).indices  # [G, N, 5]
        hit1 = (top5[..., 0] == labels).cpu().numpy()
        hit5 = (top5 == labels[None, :, None]).any(-1).cpu().numpy()
        p = probs.gather(-1, labels[None, :, None].expand(logits.shape[0], -1, 1))[..., 0].double().cpu().numpy()
        idx = labels.cpu().numpy()
        self.n += np.bincount(idx, minlength=self.classes)
        for g in range(logits.shape[0]):
            self.top1[g] += np.bincount(idx, weights=hit1[g], minlength=self.classes).astype(np.int64)
            self.top5[g] += np.bincount(idx, weights=hit5[g], minlength=self.classes).astype(np.int64)
            self.p_true[g] += np.bincount(idx, weights=p[g], minlength=self.classes)

    def state(self) -> dict[str, np.ndarray]:
        return {"n": self.n, "top1": self.top1, "top5": self.top5, "p_true": self.p_true}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.n, self.top1, self.top5, self.p_true = (np.array(state[k]) for k in ("n", "top1", "top5", "p_true"))
