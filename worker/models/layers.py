"""The study's layer set: 12 GoogLeNet layers, their unit counts, and where each model keeps them.

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

from typing import Final

# The study's layer names -> unit counts, in depth order. Both models build their taps in this
# order and check their channel counts against it.
GOOGLENET_LAYERS: Final[dict[str, int]] = {
    "conv1": 64,
    "conv2": 64,
    "conv3": 192,
    "mixed3a": 256,
    "mixed3b": 480,
    "mixed4a": 512,
    "mixed4b": 512,
    "mixed4c": 512,
    "mixed4d": 528,
    "mixed4e": 832,
    "mixed5a": 832,
    "mixed5b": 1024,
}

# Suffixes of the nine inception modules ("mixed3a" is inception 3a), in depth order.
MIXED: Final = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
# Branch names of a mixed layer, in Caffe's channel order.
MIXED_BRANCHES: Final = ("1x1", "3x3", "5x5", "pool_proj")
