"""The two GoogLeNets by name, with their weights, preprocessing and the study's layer taps.

Study layer -> module, per model. A layer's response is its pre-ReLU tensor; for a mixed layer
that is the concatenation of its four branches' last conv outputs before their ReLU, in Caffe's
channel order 1x1, 3x3, 5x5, pool_proj (torchvision's branch1..branch4).

| layer   | bvlc-googlenet (Caffe)  | googlenet (torchvision) | units | 1x1 / 3x3 / 5x5 / pool_proj |
|---------|-------------------------|-------------------------|-------|-----------------------------|
| conv1   | conv1/7x7_s2            | conv1                   | 64    | (one conv)                  |
| conv2   | conv2/3x3_reduce        | conv2                   | 64    | (one conv)                  |
| conv3   | conv2/3x3               | conv3                   | 192   | (one conv)                  |
| mixed3a | inception_3a/output     | inception3a             | 256   | 64 / 128 / 32 / 32          |
| mixed3b | inception_3b/output     | inception3b             | 480   | 128 / 192 / 96 / 64         |
| mixed4a | inception_4a/output     | inception4a             | 512   | 192 / 208 / 48 / 64         |
| mixed4b | inception_4b/output     | inception4b             | 512   | 160 / 224 / 64 / 64         |
| mixed4c | inception_4c/output     | inception4c             | 512   | 128 / 256 / 64 / 64         |
| mixed4d | inception_4d/output     | inception4d             | 528   | 112 / 288 / 64 / 64         |
| mixed4e | inception_4e/output     | inception4e             | 832   | 256 / 320 / 128 / 128       |
| mixed5a | inception_5a/output     | inception5a             | 832   | 256 / 320 / 128 / 128       |
| mixed5b | inception_5b/output     | inception5b             | 1024  | 384 / 384 / 128 / 128       |

Tapped modules (forward hooks), in this package's BVLCGoogLeNet and in torchvision's GoogLeNet:
- bvlc conv layers: the biased nn.Conv2d before its ReLU (`conv1_7x7_s2.conv`,
  `conv2_3x3_reduce.conv`, `conv2_3x3.conv`); mixed: `inception_Nx.conv_{1x1,3x3,5x5,pool_proj}.conv`.
- torchvision conv layers: `conv1.bn`, `conv2.bn`, `conv3.bn`; mixed: `inceptionNx.branch1.bn`,
  `.branch2.1.bn`, `.branch3.1.bn`, `.branch4.1.bn`. torchvision's ReLU is in-place, so the tap is
  the batch-norm output, read in the hook before ReLU overwrites it. Its "5x5" branch is a 3x3
  conv (a known torchvision quirk); the channel counts are the same.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlparse

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models import GoogLeNet_Weights

MODEL_NAMES: Final = ("bvlc-googlenet", "googlenet")


class _Default:
    """Sentinel type of `DEFAULT`: "the model's published weights"."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = _Default()
WeightsArg = str | os.PathLike[str] | None | _Default


class WeightsError(ValueError):
    """A weight folder or file that is missing, damaged or does not match its checksums."""


@dataclass(frozen=True)
class Branch:
    """One slice of a layer's channels and the module whose output is its pre-ReLU map."""

    name: str  # '1x1' | '3x3' | '5x5' | 'pool_proj' | 'conv'
    module: str  # dotted path in LoadedModel.net
    channels: int


@dataclass(frozen=True)
class LayerTap:
    """Where a study layer lives in a model, and when the forward pass has computed it."""

    layer: str  # the study's name, e.g. 'mixed4c'
    module: str  # the model's own name for it, e.g. 'inception_4c/output' or 'inception4c'
    block: str  # dotted path of the module whose output is the layer's post-ReLU response
    stage: int  # index into LoadedModel.stages after which the layer is complete
    branches: tuple[Branch, ...]

    @property
    def units(self) -> int:
        """Number of channels (units) of the layer."""
        return sum(b.channels for b in self.branches)


Stage = tuple[str, Callable[[Tensor], Tensor]]


@dataclass(frozen=True)
class LoadedModel:
    """A network ready to run, with everything a run must record about it."""

    name: str
    net: nn.Module  # in eval mode
    # net.forward decomposed into a chain: applying the stages in order gives the logits, so a
    # caller can stop after the stage that completes the deepest layer it needs.
    stages: tuple[Stage, ...]
    taps: Mapping[str, LayerTap]  # every study layer, in GOOGLENET_LAYERS order
    transform: Callable[[Image.Image], Tensor]  # RGB PIL image -> CHW float32 tensor
    preprocessing: dict[str, Any]  # JSON-able description of `transform`
    weights: str  # where the weights came from
    weights_sha256: str  # see _bvlc_weights_sha256 / file sha256; "none" for random init
    class_names: tuple[str, ...]  # 1000 ImageNet classes, index = logit index
    class_wnids: tuple[str, ...] = field(default=())  # WNID of each class, same order

    def branch_layout(self, layer: str) -> list[tuple[str, int]]:
        """(branch name, channels) of a layer, in channel order."""
        return [(b.name, b.channels) for b in self.taps[check_layers([layer])[0]].branches]

    def unit_branches(self, layer: str) -> list[str]:
        """Branch name of every unit (channel) of a layer, by unit index."""
        return [name for name, channels in self.branch_layout(layer) for _ in range(channels)]

    def module_name(self, layer: str) -> str:
        """The model's own name for a study layer."""
        return self.taps[check_layers([layer])[0]].module

    def preprocessing_json(self) -> str:
        """`preprocessing` as canonical JSON, as stored in runs.preprocessing."""
        return json.dumps(self.preprocessing, sort_keys=True)


def check_layers(layers: Sequence[str]) -> list[str]:
    """Validate study layer names; return them unique, in network order."""
    if isinstance(layers, str):
        layers = [layers]
    unknown = [name for name in layers if name not in GOOGLENET_LAYERS]
    if unknown:
        raise ValueError(
            f"unknown layer(s) {', '.join(map(repr, unknown))}; valid layers are: {', '.join(GOOGLENET_LAYERS)}"
        )
    if not layers:
        raise ValueError(f"no layers requested; valid layers are: {', '.join(GOOGLENET_LAYERS)}")
    wanted = set(layers)
    return [name for name in GOOGLENET_LAYERS if name in wanted]


def load_model(name: str, *, weights: WeightsArg = DEFAULT) -> LoadedModel:
    """Build a model by name, load its weights, and describe its layers and preprocessing.

    - bvlc-googlenet: `weights` is the folder of per-layer float32 files (the bvlc_googlenet folder
      or its weights/ subfolder); None builds a randomly initialised network (for tests).
    - googlenet: DEFAULT is torchvision's GoogLeNet_Weights.IMAGENET1K_V1 (downloaded and cached by
      torchvision); a path is a local state dict (.pth); None is a randomly initialised network.
    """
    if name == "bvlc-googlenet":
        return _load_bvlc(weights)
    if name == "googlenet":
        return _load_torchvision(weights)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


# --------------------------------------------------------------------------------------------
# Shared helpers


def _imagenet_classes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(wnids, names) of the 1000 ImageNet-1k classes from the packaged list."""
    text = resources.files("worker").joinpath("categories/imagenet1k.txt").read_text("utf-8")
    rows = [line.split(" ", 1) for line in text.splitlines() if line.strip()]
    return tuple(r[0] for r in rows), tuple(r[1].strip() for r in rows)


def _sha256_file(path: Path) -> str:
    """Hex sha256 of one file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _build_taps(
    stages: Sequence[Stage], layers: Mapping[str, tuple[str, str, str, list[Branch]]]
) -> Mapping[str, LayerTap]:
    """LayerTaps from {layer: (own module name, block path, stage name, branches)}."""
    index = {name: i for i, (name, _) in enumerate(stages)}
    taps = {}
    for layer in GOOGLENET_LAYERS:
        module, block, stage, branches = layers[layer]
        tap = LayerTap(layer, module, block, index[stage], tuple(branches))
        # GOOGLENET_LAYERS is the authority on unit counts; a mismatch is a bug in this file.
        assert tap.units == GOOGLENET_LAYERS[layer], (layer, tap.units)
        taps[layer] = tap
    return MappingProxyType(taps)


# --------------------------------------------------------------------------------------------
# bvlc-googlenet: the Caffe model, built from deploy.prototxt

_MIXED: Final = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
# Caffe mean pixel of the BVLC GoogLeNet training set, in the network's BGR channel order.
CAFFE_MEAN_BGR: Final = (104.0, 117.0, 123.0)


class ConvReLU(nn.Module):
    """A biased Caffe convolution followed by its (in-place) ReLU; `conv` output is pre-ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, pad: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, bias=True)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv(x))


class CaffeLRN(nn.LocalResponseNorm):
    """Caffe's across-channel LRN: x / (k + alpha/size * sum of x^2 over `size` channels)^beta.

    Same arithmetic as nn.LocalResponseNorm (zero padding, sum/size), computed for speed: the
    channel window is a sum of shifted slices of an N*H*W x C view (a free view for
    channels_last tensors), one cache-sized group of images at a time. On this project's 2-core
    CPU that is about 3x faster than nn.LocalResponseNorm's 5-D avg_pool3d, which made the two
    LRNs a quarter of the whole network's time.
    """

    chunk_bytes: Final = 4 << 20  # images per group: as many as fit in about 4 MB

    def forward(self, x: Tensor) -> Tensor:
        out = torch.empty_like(x)  # keeps x's memory format
        step = max(1, self.chunk_bytes // (x[0].numel() * x.element_size()))
        for start in range(0, x.shape[0], step):
            part = x[start : start + step]
            torch.div(part, self._scale(part), out=out[start : start + step])
        return out

    def _scale(self, x: Tensor) -> Tensor:
        """(k + alpha/size * window sum of x^2)^beta, shaped like x."""
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
        padded = F.pad(rows, (self.size // 2, (self.size - 1) // 2))
        window = padded[:, :c] * padded[:, :c]
        for shift in range(1, self.size):
            window.addcmul_(padded[:, shift : shift + c], padded[:, shift : shift + c])
        scale = window.mul_(self.alpha / self.size).add_(self.k).pow_(self.beta)
        return scale.view(n, h, w, c).permute(0, 3, 1, 2)


class CaffeInception(nn.Module):
    """A Caffe inception module: four branches concatenated as 1x1, 3x3, 5x5, pool_proj."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int) -> None:
        super().__init__()
        self.conv_1x1 = ConvReLU(cin, c1, 1)
        self.conv_3x3_reduce = ConvReLU(cin, c3r, 1)
        self.conv_3x3 = ConvReLU(c3r, c3, 3, pad=1)
        self.conv_5x5_reduce = ConvReLU(cin, c5r, 1)
        self.conv_5x5 = ConvReLU(c5r, c5, 5, pad=2)  # a real 5x5, unlike torchvision
        self.pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.conv_pool_proj = ConvReLU(cin, cp, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.conv_1x1(x),
                self.conv_3x3(self.conv_3x3_reduce(x)),
                self.conv_5x5(self.conv_5x5_reduce(x)),
                self.conv_pool_proj(self.pool(x)),
            ],
            1,
        )


class CaffeHead(nn.Module):
    """pool5/7x7_s1 average pool, dropout, loss3/classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(7, stride=1, ceil_mode=True)
        self.dropout = nn.Dropout(0.4)
        self.classifier = nn.Linear(1024, 1000)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))


# (cin, 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj) from deploy.prototxt.
_INCEPTION_CHANNELS: Final = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class BVLCGoogLeNet(nn.Sequential):
    """The Caffe BVLC GoogLeNet (deploy.prototxt): no batch norm, LRN, ceil-mode pooling.

    Its children are the forward stages in order; child names are Caffe's with '/' -> '_'.
    Input: BGR, 0..255 minus the mean pixel (see CaffeTransform).
    """

    def __init__(self) -> None:
        def lrn() -> nn.Module:
            return CaffeLRN(5, alpha=1e-4, beta=0.75, k=1.0)

        def pool() -> nn.Module:
            return nn.MaxPool2d(3, stride=2, ceil_mode=True)

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        stages["conv1_7x7_s2"] = ConvReLU(3, 64, 7, stride=2, pad=3)  # N x 64 x 112 x 112
        stages["pool1_3x3_s2"] = pool()  # N x 64 x 56 x 56
        stages["pool1_norm1"] = lrn()
        stages["conv2_3x3_reduce"] = ConvReLU(64, 64, 1)  # N x 64 x 56 x 56
        stages["conv2_3x3"] = ConvReLU(64, 192, 3, pad=1)  # N x 192 x 56 x 56
        stages["conv2_norm2"] = lrn()
        stages["pool2_3x3_s2"] = pool()  # N x 192 x 28 x 28
        for mixed in _MIXED:
            stages[f"inception_{mixed}"] = CaffeInception(*_INCEPTION_CHANNELS[mixed])
            if mixed == "3b":
                stages["pool3_3x3_s2"] = pool()  # N x 480 x 14 x 14
            elif mixed == "4e":
                stages["pool4_3x3_s2"] = pool()  # N x 832 x 7 x 7 (torchvision: 2x2)
        # inception_5b: N x 1024 x 7 x 7
        stages["head"] = CaffeHead()  # N x 1000
        super().__init__(stages)

    def caffe_params(self) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
        """(Caffe layer name, module) for every layer with weights, in network order."""
        params: list[tuple[str, nn.Conv2d | nn.Linear]] = [
            ("conv1/7x7_s2", self.conv1_7x7_s2.conv),
            ("conv2/3x3_reduce", self.conv2_3x3_reduce.conv),
            ("conv2/3x3", self.conv2_3x3.conv),
        ]
        for mixed in _MIXED:
            block = self.get_submodule(f"inception_{mixed}")
            for part in ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj"):
                params.append((f"inception_{mixed}/{part}", getattr(block, f"conv_{part}").conv))
        params.append(("loss3/classifier", self.head.classifier))
        return params


def _bvlc_taps(net: BVLCGoogLeNet) -> Mapping[str, LayerTap]:
    """The study layers of BVLCGoogLeNet."""
    layers: dict[str, tuple[str, str, str, list[Branch]]] = {}
    for layer, caffe, stage in (
        ("conv1", "conv1/7x7_s2", "conv1_7x7_s2"),
        ("conv2", "conv2/3x3_reduce", "conv2_3x3_reduce"),
        ("conv3", "conv2/3x3", "conv2_3x3"),
    ):
        conv = net.get_submodule(stage).conv
        layers[layer] = (caffe, stage, stage, [Branch("conv", f"{stage}.conv", conv.out_channels)])
    for mixed in _MIXED:
        stage = f"inception_{mixed}"
        branches = []
        for part in ("1x1", "3x3", "5x5", "pool_proj"):
            path = f"{stage}.conv_{part}.conv"
            branches.append(Branch(part, path, net.get_submodule(path).out_channels))
        layers[f"mixed{mixed}"] = (f"{stage}/output", stage, stage, branches)
    return _build_taps(tuple(net.named_children()), layers)


class CaffeTransform:
    """Caffe preprocessing: short side 256 (PIL bilinear), centre crop 224, 0..255, BGR, minus mean.

    Maps an RGB PIL image to a 3 x 224 x 224 float32 tensor; no division by a std. The long side
    is rounded to the nearest pixel (torchvision truncates): this reproduces the reference
    probabilities in the BVLC README (chelsea 451x300 -> 385x256, not 384x256).
    """

    def __init__(
        self, resize: int = 256, crop: int = 224, mean_bgr: tuple[float, float, float] = CAFFE_MEAN_BGR
    ) -> None:
        self.resize, self.crop, self.mean_bgr = resize, crop, mean_bgr

    def __call__(self, image: Image.Image) -> Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size
        scale = self.resize / min(width, height)
        size = (max(self.resize, round(width * scale)), max(self.resize, round(height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
        image = TF.center_crop(image, self.crop)
        rgb = torch.from_numpy(np.array(image, dtype=np.float32))  # H x W x RGB, 0..255
        bgr = rgb.flip(-1) - torch.tensor(self.mean_bgr)
        return bgr.permute(2, 0, 1).contiguous()  # 3 x H x W

    def describe(self) -> dict[str, Any]:
        """JSON-able description for runs.preprocessing."""
        return {
            "convention": "caffe",
            "resize_short_side": self.resize,
            "interpolation": "bilinear (PIL), long side rounded",
            "center_crop": self.crop,
            "scale": "0..255",
            "channels": "BGR",
            "mean_bgr": list(self.mean_bgr),
            "std": None,
        }

    def __repr__(self) -> str:
        return f"CaffeTransform(resize={self.resize}, crop={self.crop}, mean_bgr={self.mean_bgr})"


def _weights_dir(path: str | os.PathLike[str]) -> Path:
    """The folder holding the per-layer files: `path` itself or its weights/ subfolder."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise WeightsError(f"bvlc-googlenet weights folder not found: {folder}")
    if (folder / "weights").is_dir() and not (folder / "conv1").is_dir():
        folder = folder / "weights"
    return folder


def _bvlc_expected_files(net: BVLCGoogLeNet) -> dict[str, tuple[nn.Parameter, tuple[int, ...]]]:
    """{relative file path: (parameter, stored shape)} of every file the model reads."""
    files = {}
    for caffe, module in net.caffe_params():
        weight = module.weight
        if weight.dim() == 4:  # stored (out, kh, kw, in)
            out_c, in_c, kh, kw = weight.shape
            stored: tuple[int, ...] = (out_c, kh, kw, in_c)
        else:
            stored = tuple(weight.shape)
        files[f"{caffe}_filter.bin"] = (weight, stored)
        files[f"{caffe}_bias.bin"] = (module.bias, tuple(module.bias.shape))
    return files


def _read_sha256sums(folder: Path) -> dict[str, str] | None:
    """{path relative to the weights folder: sha256} from a SHA256SUMS beside it, if any."""
    for sums, prefix in ((folder / "SHA256SUMS", ""), (folder.parent / "SHA256SUMS", f"{folder.name}/")):
        if sums.is_file():
            table = {}
            for line in sums.read_text("utf-8").splitlines():
                if line.strip():
                    digest, name = line.split(maxsplit=1)
                    name = name.lstrip("*")  # binary-mode marker of sha256sum
                    if name.startswith(prefix):
                        table[name[len(prefix) :]] = digest.lower()
            return table
    return None


def _bvlc_weights_sha256(folder: Path, files: Sequence[str]) -> str:
    """weights_sha256 of a BVLC folder.

    Defined as the sha256 of the concatenated bytes of every weight file the model reads (116
    files, `<caffe layer>_filter.bin` and `_bias.bin`), taken in sorted order of their paths
    relative to the weights/ folder ('/'-separated, Python string order); no names or separators
    are hashed. Equal digests mean the network computes with byte-identical parameters.
    """
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def _load_bvlc_weights(net: BVLCGoogLeNet, path: str | os.PathLike[str]) -> tuple[Path, str]:
    """Fill `net` from a weight folder; check sizes and SHA256SUMS. Returns (folder, sha256)."""
    folder = _weights_dir(path)
    expected = _bvlc_expected_files(net)
    sums = _read_sha256sums(folder)
    blobs = {}
    for name, (param, stored) in expected.items():
        file = folder / name
        if not file.is_file():
            raise WeightsError(f"missing weight file {file} (expected {stored} float32 values)")
        blob = file.read_bytes()
        n_bytes = 4 * int(np.prod(stored))
        if len(blob) != n_bytes:
            raise WeightsError(
                f"weight file {file} has {len(blob)} bytes, expected {n_bytes} "
                f"(float32 {stored}); it is truncated or not this layer's file"
            )
        if sums is not None:
            if name not in sums:
                raise WeightsError(f"weight file {file} is not listed in {folder}'s SHA256SUMS")
            if hashlib.sha256(blob).hexdigest() != sums[name]:
                raise WeightsError(f"weight file {file} does not match its SHA256SUMS entry")
        blobs[name] = blob
    with torch.no_grad():
        for name, (param, stored) in expected.items():
            values = torch.from_numpy(np.frombuffer(blobs[name], dtype="<f4").reshape(stored).copy())
            if len(stored) == 4:
                values = values.permute(0, 3, 1, 2)  # (out, kh, kw, in) -> (out, in, kh, kw)
            param.copy_(values)
    return folder, _bvlc_weights_sha256(folder, list(expected))


def _check_synsets(folder: Path, wnids: Sequence[str]) -> None:
    """Refuse a weight folder whose synset_words.txt orders the classes differently."""
    for candidate in (folder / "synset_words.txt", folder.parent / "synset_words.txt"):
        if candidate.is_file():
            theirs = [line.split(" ", 1)[0] for line in candidate.read_text("utf-8").splitlines() if line.strip()]
            if theirs != list(wnids):
                raise WeightsError(f"{candidate} lists the classes in a different order than ImageNet-1k")
            return


def _load_bvlc(weights: WeightsArg) -> LoadedModel:
    """bvlc-googlenet from a folder of per-layer files, or randomly initialised for None."""
    if isinstance(weights, _Default):
        raise WeightsError(
            "bvlc-googlenet has no downloadable default weights: pass the folder of per-layer "
            "float32 files (e.g. --weights path/to/bvlc_googlenet)"
        )
    net = BVLCGoogLeNet()
    wnids, names = _imagenet_classes()
    if weights is None:
        source, sha = "random init (no weights)", "none"
    else:
        folder, sha = _load_bvlc_weights(net, weights)
        _check_synsets(folder, wnids)
        source = str(folder.resolve())
    net.eval()
    transform = CaffeTransform()
    return LoadedModel(
        name="bvlc-googlenet",
        net=net,
        stages=tuple(net.named_children()),
        taps=_bvlc_taps(net),
        transform=transform,
        preprocessing=transform.describe(),
        weights=source,
        weights_sha256=sha,
        class_names=names,
        class_wnids=wnids,
    )


# --------------------------------------------------------------------------------------------
# googlenet: torchvision's GoogLeNet (batch norm; its own training)

_TV_STAGES: Final = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
    "inception5a", "inception5b",
)  # fmt: skip


def _torchvision_stages(net: torchvision.models.GoogLeNet) -> tuple[Stage, ...]:
    """GoogLeNet.forward in eval mode as a chain (aux heads only run in training)."""

    def head(x: Tensor) -> Tensor:
        return net.fc(net.dropout(torch.flatten(net.avgpool(x), 1)))

    stages: list[Stage] = [("transform_input", net._transform_input)]
    stages += [(name, net.get_submodule(name)) for name in _TV_STAGES]
    stages.append(("head", head))
    return tuple(stages)


def _torchvision_taps(net: torchvision.models.GoogLeNet, stages: Sequence[Stage]) -> Mapping[str, LayerTap]:
    """The study layers of torchvision's GoogLeNet; taps are BasicConv2d.bn (before in-place ReLU)."""
    layers: dict[str, tuple[str, str, str, list[Branch]]] = {}
    for layer in ("conv1", "conv2", "conv3"):
        path = f"{layer}.bn"
        layers[layer] = (layer, layer, layer, [Branch("conv", path, net.get_submodule(path).num_features)])
    for mixed in _MIXED:
        module = f"inception{mixed}"
        branches = []
        for part, path in (
            ("1x1", "branch1.bn"),
            ("3x3", "branch2.1.bn"),
            ("5x5", "branch3.1.bn"),  # a 3x3 conv in torchvision, in the 5x5 slot
            ("pool_proj", "branch4.1.bn"),
        ):
            full = f"{module}.{path}"
            branches.append(Branch(part, full, net.get_submodule(full).num_features))
        layers[f"mixed{mixed}"] = (module, module, module, branches)
    return _build_taps(stages, layers)


def _load_torchvision(weights: WeightsArg) -> LoadedModel:
    """torchvision googlenet with published, local (.pth) or no weights."""
    published = GoogLeNet_Weights.IMAGENET1K_V1
    if isinstance(weights, _Default):
        net = torchvision.models.googlenet(weights=published)  # downloads once, then cached
        file = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(published.url).path).name
        source, sha = f"torchvision {published!r} ({published.url})", _sha256_file(file)
    elif weights is None:
        net = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=True)
        source, sha = "random init (no weights)", "none"
    else:
        file = Path(weights).expanduser()
        if not file.is_file():
            raise WeightsError(f"googlenet state dict not found: {file}")
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle, zip and format errors alike: say which file
            raise WeightsError(f"cannot read googlenet state dict {file}: {error}") from error
        if not isinstance(state, Mapping):
            raise WeightsError(f"{file} does not hold a state dict")
        # As torchvision does for its own weights: the published file carries the (untrained)
        # auxiliary heads, which are loaded and then dropped.
        has_aux = any(key.startswith(("aux1.", "aux2.")) for key in state)
        net = torchvision.models.googlenet(
            weights=None, aux_logits=has_aux, transform_input=True, init_weights=False
        )
        try:
            net.load_state_dict(state)
        except RuntimeError as error:
            raise WeightsError(f"{file} is not a torchvision GoogLeNet state dict: {error}") from error
        net.aux_logits, net.aux1, net.aux2 = False, None, None
        source, sha = str(file.resolve()), _sha256_file(file)
    net.eval()
    transform = published.transforms()
    stages = _torchvision_stages(net)
    wnids, _ = _imagenet_classes()
    return LoadedModel(
        name="googlenet",
        net=net,
        stages=stages,
        taps=_torchvision_taps(net, stages),
        transform=transform,
        preprocessing={
            "convention": "torchvision",
            "weights_transforms": f"{published!r}.transforms()",
            "resize_short_side": transform.resize_size,
            "interpolation": transform.interpolation.value,
            "antialias": transform.antialias,
            "center_crop": transform.crop_size,
            "scale": "0..1",
            "channels": "RGB",
            "mean": list(transform.mean),
            "std": list(transform.std),
            "model_transform_input": net.transform_input,
        },
        weights=source,
        weights_sha256=sha,
        class_names=tuple(published.meta["categories"]),
        class_wnids=wnids,
    )


GOOGLENET_LAYERS: Final[dict[str, int]] = {  # TEMP until models package lands
    "conv1": 64, "conv2": 64, "conv3": 192, "mixed3a": 256, "mixed3b": 480, "mixed4a": 512,
    "mixed4b": 512, "mixed4c": 512, "mixed4d": 528, "mixed4e": 832, "mixed5a": 832, "mixed5b": 1024,
}  # fmt: skip
