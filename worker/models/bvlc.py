"""bvlc-googlenet: the original Caffe GoogLeNet (deploy.prototxt), its Caffe preprocessing and its weights entry."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F

from worker.categories import load_imagenet_classes
from worker.models._api import Weights, WeightsArg, register_model
from worker.models.caffe_format import caffe_weights
from worker.models.layers import GOOGLENET_LAYERS, MIXED, MIXED_BRANCHES
from worker.models.taps import Branch, LayerTap, LoadedModel, build_taps

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
    channels_last tensors), one cache-sized group of images at a time; x is then multiplied by the
    scale's inverse, for Caffe's beta = 0.75 rsqrt(s) * sqrt(rsqrt(s)), which costs less than a pow.
    On this project's 2-core CPU that is 6x faster than nn.LocalResponseNorm's 5-D avg_pool3d (which
    made the two LRNs a quarter of the whole network's time), and the rsqrt 1.3-1.7x faster than the
    pow; both are within 3e-7 of torch's LRN in float64 (pow 1.5e-7, rsqrt 2.8e-7; bench/lrn_speed.py).
    """

    chunk_bytes: Final = 4 << 20  # images per group: as many as fit in about 4 MB

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            return super().forward(x)  # feature visualisation (worker.feature_vis) needs the gradient
        out = torch.empty_like(x)  # keeps x's memory format
        step = max(1, self.chunk_bytes // (x[0].numel() * x.element_size()))
        for start in range(0, x.shape[0], step):
            part = x[start : start + step]
            torch.mul(part, self._inverse_scale(part), out=out[start : start + step])
        return out

    def _inverse_scale(self, x: Tensor) -> Tensor:
        """(k + alpha/size * window sum of x^2)^-beta, shaped like x."""
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
        padded = F.pad(rows, (self.size // 2, (self.size - 1) // 2))
        window = padded[:, :c] * padded[:, :c]
        for shift in range(1, self.size):
            window.addcmul_(padded[:, shift : shift + c], padded[:, shift : shift + c])
        scale = window.mul_(self.alpha / self.size).add_(self.k)
        if self.beta == 0.75:
            inverse = scale.rsqrt_()
            inverse.mul_(inverse.sqrt())  # s^-1/2 * s^-1/4
        else:
            inverse = scale.pow_(-self.beta)
        return inverse.view(n, h, w, c).permute(0, 3, 1, 2)


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
        for mixed in MIXED:
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
        for mixed in MIXED:
            block = self.get_submodule(f"inception_{mixed}")
            for part in ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj"):
                params.append((f"inception_{mixed}/{part}", getattr(block, f"conv_{part}").conv))
        params.append(("loss3/classifier", self.head.classifier))
        return params


def _bvlc_taps(net: BVLCGoogLeNet) -> Mapping[str, LayerTap]:
    """The study layers of BVLCGoogLeNet."""
    places: dict[str, tuple[str, str, str, list[Branch]]] = {}
    for layer, caffe, stage in (
        ("conv1", "conv1/7x7_s2", "conv1_7x7_s2"),
        ("conv2", "conv2/3x3_reduce", "conv2_3x3_reduce"),
        ("conv3", "conv2/3x3", "conv2_3x3"),
    ):
        conv = net.get_submodule(stage).conv
        places[layer] = (caffe, stage, stage, [Branch("conv", f"{stage}.conv", conv.out_channels)])
    for mixed in MIXED:
        stage = f"inception_{mixed}"
        branches = []
        for part in MIXED_BRANCHES:
            path = f"{stage}.conv_{part}.conv"
            branches.append(Branch(part, path, net.get_submodule(path).out_channels))
        places[f"mixed{mixed}"] = (f"{stage}/output", stage, stage, branches)
    return build_taps(tuple(net.named_children()), places, GOOGLENET_LAYERS)


class CaffeTransform:
    """Caffe preprocessing: short side 256 (PIL bilinear), centre crop 224, 0..255, BGR, minus mean.

    Maps an RGB PIL image to a 3 x crop x crop float32 tensor; no division by a std. The long side
    is rounded to the nearest pixel (torchvision truncates): this reproduces the reference
    probabilities in the BVLC README (chelsea 451x300 -> 385x256, not 384x256). The crop offset
    is floored, `(W - 224) // 2`, as in Caffe's data transformer and caffe.io; torchvision's
    center_crop rounds it, which shifts an image with an odd margin (e.g. 267 x 256) by a pixel.
    """

    def __init__(
        self, resize: int = 256, crop: int = 224, mean_bgr: tuple[float, float, float] = CAFFE_MEAN_BGR
    ) -> None:
        self.resize, self.crop, self.mean_bgr = resize, crop, mean_bgr

    def __call__(self, image: Image.Image | Tensor) -> Tensor:
        """An RGB PIL image, or a uint8 3 x H x W RGB tensor on any device (--decode gpu), -> the input.

        A tensor is resized in torch (antialiased bilinear, as PIL's BILINEAR when shrinking) with the
        same geometry, on its own device; the result differs from PIL's by a few 8-bit levels at most.
        """
        if isinstance(image, Tensor):
            return self._from_tensor(image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = self._resized(*image.size)
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        left, top = (width - self.crop) // 2, (height - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        rgb = torch.from_numpy(np.array(image, dtype=np.float32))  # H x W x RGB, 0..255
        bgr = rgb.flip(-1) - torch.tensor(self.mean_bgr)
        return bgr.permute(2, 0, 1).contiguous()  # 3 x H x W

    def _resized(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the short-side resize, the long side rounded."""
        scale = self.resize / min(width, height)
        return max(self.resize, round(width * scale)), max(self.resize, round(height * scale))

    def _from_tensor(self, image: Tensor) -> Tensor:
        # torchvision only here, for the GPU decoder's tensors: a PIL image needs none (worker.models._api)
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2.functional import resize

        width, height = self._resized(image.shape[-1], image.shape[-2])
        resized = resize(image, [height, width], interpolation=InterpolationMode.BILINEAR, antialias=True)
        left, top = (width - self.crop) // 2, (height - self.crop) // 2
        rgb = resized[:, top : top + self.crop, left : left + self.crop].float()  # still whole 8-bit levels
        mean = torch.tensor(self.mean_bgr, device=image.device).view(3, 1, 1)
        return rgb.flip(0) - mean

    def to_rgb255(self, batch: Tensor) -> Tensor:
        """N x 3 x H x W outputs of this transform -> the crops as RGB on 0..255 (mean added back, BGR -> RGB).

        Rounded to whole numbers: the crops were 8-bit, so this gives them back exactly.
        """
        mean = torch.tensor(self.mean_bgr, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
        return (batch + mean).flip(1).round()

    def from_rgb255(self, batch: Tensor) -> Tensor:
        """N x 3 x H x W RGB on 0..255 -> this transform's output scale (RGB -> BGR, mean subtracted)."""
        mean = torch.tensor(self.mean_bgr, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
        return batch.flip(1) - mean

    def describe(self) -> dict[str, Any]:
        """JSON-able description for runs.preprocessing."""
        return {
            "convention": "caffe",
            "resize_short_side": self.resize,
            "interpolation": "bilinear (PIL), long side rounded",
            "center_crop": self.crop,
            "center_crop_offset": "floor, as Caffe",
            "scale": "0..255",
            "channels": "BGR",
            "mean_bgr": list(self.mean_bgr),
            "std": None,
        }

    def __repr__(self) -> str:
        return f"CaffeTransform(resize={self.resize}, crop={self.crop}, mean_bgr={self.mean_bgr})"


# The BVLC weights as torchvision describes its own: the files come from a local folder (see
# caffe_format), so `url` says where that export was published, not what get_model downloads.
BVLC_GOOGLENET: Final = Weights(
    url="https://github.com/chaosmail/caffejs/tree/424d986/models/bvlc_googlenet/weights",
    transforms=CaffeTransform,
    meta={
        "categories": [c.name for c in load_imagenet_classes().values()],
        "preprocessing": CaffeTransform().describe(),
        "recipe": "https://github.com/BVLC/caffe/tree/master/models/bvlc_googlenet",
        "_docs": "The Caffe model zoo's bvlc_googlenet (Szegedy et al. 2015), exported per layer as raw "
        "float32 files; it expects Caffe's preprocessing (CaffeTransform).",
    },
)


@register_model("bvlc-googlenet")
def bvlc_googlenet(*, weights: WeightsArg) -> LoadedModel:
    """bvlc-googlenet from a folder of per-layer files (the bvlc_googlenet folder or its weights/), or
    randomly initialised for None: PyTorch's default init of each nn.Conv2d / nn.Linear (the
    network has no init of its own). It has no downloadable default."""
    net = BVLCGoogLeNet()
    wnids = tuple(load_imagenet_classes())
    source, sha = caffe_weights("bvlc-googlenet", net.caffe_params(), weights, wnids)
    net.eval()
    transform = BVLC_GOOGLENET.transforms()
    return LoadedModel(
        name="bvlc-googlenet",
        net=net,
        stages=tuple(net.named_children()),
        taps=_bvlc_taps(net),
        transform=transform,
        to_rgb255=transform.to_rgb255,
        from_rgb255=transform.from_rgb255,
        preprocessing=dict(BVLC_GOOGLENET.meta["preprocessing"]),
        weights=source,
        weights_sha256=sha,
        class_names=tuple(BVLC_GOOGLENET.meta["categories"]),
        class_wnids=wnids,
    )
