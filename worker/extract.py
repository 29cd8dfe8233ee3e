"""Pre-ReLU unit responses: per-map mean/max/min, computed in forward hooks, stopping early."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from types import TracebackType

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from unitscope.schema import STATS, basis_staging_layer
from worker.basis import rotation
from worker.models import LoadedModel
from worker.shown_maps import ShownMaps

# The last axis of every statistics tensor holds the stats in schema order.
assert STATS == ("mean", "max", "min")

Hook = Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; otherwise the named device, checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here")
    return device


def reduce_map(pre: Tensor) -> Tensor:
    """[N, C, H, W] pre-ReLU maps -> [N, C, 3] float32 (mean, max, min) over each map."""
    pre = pre.float()
    # Three plain reductions over (H, W): several times faster on CPU than torch.aminmax, in
    # either memory format.
    return torch.stack((pre.mean((2, 3)), pre.amax((2, 3)), pre.amin((2, 3))), dim=2)


class Extractor:
    """Runs a LoadedModel over image batches and returns each requested layer's unit statistics.

    `layers` are study layer names, checked by the model (LoadedModel.select_layers; none means
    every layer). The network runs only up to the stage that completes the deepest of them. Each
    branch's pre-ReLU map is reduced inside its forward hook, on the device, so no full map is
    kept. The hooks belong to this instance (and keep it alive): call close(), or use it as a
    context manager.
    Note: the model's net is moved to `device` (and channels_last) in place.

    channels_last (default): NHWC tensors, ~1.4x faster on CPU with the same numbers (1e-6).
    allow_tf32: let CUDA run fp32 convolutions as TF32 (faster, not the default: ~1e-3 drift).
    bases, basis_layers: for each of basis_layers, the directions of `bases` seeded random orthonormal bases
    (worker.basis) are reduced as the units are, under schema.basis_staging_layer(layer, b): the layer's
    branches are kept until the last one is computed, then rotated together (C x C x H x W multiply-adds
    per image and basis: +6% on the forward pass for mixed4c on a CPU with two bases, +92% for all 12 layers;
    bench/basis_cost.py).
    """

    def __init__(
        self,
        model: LoadedModel,
        layers: Sequence[str],
        device: torch.device | str = "cpu",
        *,
        channels_last: bool = True,
        allow_tf32: bool = False,
        bases: int = 0,
        basis_layers: Sequence[str] = (),
        keep_shown: bool = False,
    ) -> None:
        self.model = model
        self.layers = model.select_layers(layers)
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.allow_tf32 = allow_tf32
        model.net.to(self.device, memory_format=self.memory_format)
        taps = [model.taps[layer] for layer in self.layers]
        self._stages = model.stages[: max(tap.stage for tap in taps) + 1]
        # Per call: layer -> [N, units, 3] on the device (stats) or layer -> list of maps (full).
        self._stats: dict[str, Tensor] | None = None
        self._maps: dict[str, list[Tensor | None]] | None = None
        self._handles: list[RemovableHandle] = []
        unknown = set(basis_layers) - set(self.layers)
        if unknown:
            raise ValueError(f"basis layers {sorted(unknown)} are not among the layers recorded: {self.layers}")
        # layer -> its bases' rotations on the device, float32 (units x units); and per call, its branches' maps.
        self._rotations = {tap.layer: [torch.from_numpy(rotation(tap.units, b)).float().to(self.device)
                                       for b in range(bases)] for tap in taps if tap.layer in basis_layers}
        self._parts: dict[str, list[Tensor | None]] = {}
        # keep_shown: every call given image ids offers each branch's maps to the unit pages' heaps (worker.shown_maps)
        self.shown = ShownMaps({tap.layer: tap.units for tap in taps}) if keep_shown else None
        self._ids: np.ndarray | None = None
        for tap in taps:
            offset = 0
            for index, branch in enumerate(tap.branches):
                hook = self._make_hook(tap.layer, index, offset, branch.channels)
                self._handles.append(model.net.get_submodule(branch.module).register_forward_hook(hook))
                offset += branch.channels

    def _make_hook(self, layer: str, index: int, offset: int, channels: int) -> Hook:
        """A forward hook storing one branch's pre-ReLU output (before any in-place ReLU runs)."""

        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if self._stats is not None:
                stats = self._stats[layer][:, offset : offset + channels] = reduce_map(output)
                if self.shown is not None and self._ids is not None:
                    self.shown.offer(layer, offset, stats, output, self._ids)
                if layer in self._rotations:
                    self._keep_for_bases(layer, index, output)
            elif self._maps is not None:
                # Cloned: the ReLU that follows overwrites `output` in place.
                self._maps[layer][index] = output.float().clone(memory_format=torch.contiguous_format)

        return hook

    def _keep_for_bases(self, layer: str, index: int, output: Tensor) -> None:
        """Keep a branch's map (cloned: an in-place ReLU follows); once the layer is whole, reduce its bases."""
        parts = self._parts.setdefault(layer, [None] * len(self.model.taps[layer].branches))
        parts[index] = output.float().clone(memory_format=torch.contiguous_format)
        if any(part is None for part in parts):
            return
        whole = torch.cat(parts, 1)  # type: ignore[arg-type]
        del self._parts[layer]
        assert self._stats is not None
        n, c, h, w = whole.shape
        for b, q in enumerate(self._rotations[layer]):
            # One batched matrix product (BLAS): faster than einsum over the same axes.
            rotated = torch.matmul(q, whole.view(n, c, h * w)).view(n, c, h, w)
            self._stats[basis_staging_layer(layer, b)] = reduce_map(rotated)

    @property
    def stages_run(self) -> list[str]:
        """Names of the model stages a call executes (the rest of the network is skipped)."""
        return [name for name, _ in self._stages]

    def _backend_flags(self) -> contextlib.AbstractContextManager[None]:
        """On CUDA: cuDNN autotuning for the fixed input size, and true fp32 convolutions.

        PyTorch runs fp32 convolutions as TF32 on recent GPUs by default, which changes results
        by ~1e-3; the study's numbers are fp32 unless allow_tf32 is asked for.
        """
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.backends.cudnn.flags(
            enabled=True,
            benchmark=True,
            deterministic=False,
            allow_tf32=self.allow_tf32,
            fp32_precision="tf32" if self.allow_tf32 else "ieee",
        )

    def _forward(self, images: Tensor) -> None:
        """Run the needed stages on a batch; hooks collect into self._stats / self._maps."""
        x = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with self._backend_flags():
            for _, stage in self._stages:
                x = stage(x)

    def __call__(self, images: Tensor, ids: Sequence[int] | None = None) -> dict[str, Tensor]:
        """[N, 3, H, W] images -> {layer: float32 CPU [N, units, 3] (mean, max, min)}, depth order, then each
        layer's bases (basis_staging_layer names) as they complete. ids: the images' ids, for keep_shown."""
        self._check_open()
        n = images.shape[0]
        self._ids = None if ids is None else np.asarray(ids, dtype=np.int64)
        with torch.inference_mode():
            self._stats = {
                layer: torch.empty(n, self.model.taps[layer].units, 3, device=self.device)
                for layer in self.layers
            }
            try:
                self._forward(images)
                return {layer: stats.cpu() for layer, stats in self._stats.items()}
            finally:
                self._stats = None
                self._ids = None
                self._parts.clear()

    def maps(self, images: Tensor) -> dict[str, Tensor]:
        """[N, 3, H, W] images -> {layer: float32 CPU [N, units, H', W']} full pre-ReLU maps."""
        self._check_open()
        with torch.inference_mode():
            self._maps = {layer: [None] * len(self.model.taps[layer].branches) for layer in self.layers}
            try:
                self._forward(images)
                return {layer: torch.cat(parts, 1).cpu() for layer, parts in self._maps.items()}  # type: ignore[arg-type]
            finally:
                self._maps = None

    def _check_open(self) -> None:
        if not self._handles:
            raise RuntimeError("Extractor is closed")

    def close(self) -> None:
        """Remove this extractor's hooks from the network."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> Extractor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
