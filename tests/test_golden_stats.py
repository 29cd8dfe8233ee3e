"""Golden unit statistics: the extraction path of a seeded, randomly initialised googlenet on shipped images.

Needs no ../shared: the images come with scikit-image (`astronaut`, `coffee`, `chelsea`, and the
grayscale `camera`), the network is torchvision's GoogLeNet with `weights=None` built right after
`torch.manual_seed(0)`. The images go through the worker's own path: files decoded to RGB by
`worker.images` (ImageDataset, make_loader), the model's transform, and `Extractor` over all 12
layers. For each image and layer the expected file holds the aggregate over units (mean of the
units' means, max of their maxes, min of their mins) and the (mean, max, min) of four units spread
over the layer's channels, so a change in preprocessing, the network, the taps or the reductions
fails the test.

Regenerate `tests/expect/googlenet_random_stats.json` after an intended change, and say why in
the commit:

    UNITSCOPE_REGEN_EXPECT=1 python -m pytest tests/test_golden_stats.py
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from skimage import data

from worker.extract import Extractor
from worker.images import ImageDataset, make_loader
from worker.models import get_model

EXPECT = Path(__file__).parent / "expect" / "googlenet_random_stats.json"
REGEN = os.environ.get("UNITSCOPE_REGEN_EXPECT") == "1"
SEED = 0
IMAGES = ("astronaut", "coffee", "chelsea", "camera")  # camera: grayscale, converted to RGB on decoding
# The stored float32 values are reproduced to rounding: channels_last and the CPU's vector width
# move them by about 1e-6 relative. A unit's mean can sit near zero, so the absolute tolerance is
# relative to the largest value of that image and layer.
RTOL = 1e-4
ATOL_OF_LAYER_SCALE = 1e-5


def compute(folder: Path) -> dict[str, dict[str, dict[str, list[float]]]]:
    """{image: {layer: {"all": [mean, max, min], "<unit>": [mean, max, min], ...}}} from the worker's path."""
    for name in IMAGES:
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")  # lossless: the same pixels
    torch.manual_seed(SEED)
    model = get_model("googlenet", weights=None)
    dataset = ImageDataset(folder, [(i, f"{name}.png") for i, name in enumerate(IMAGES)], model.transform)
    (batch,) = make_loader(dataset, batch_size=len(IMAGES), workers=0, pin_memory=False)
    assert [item.mode for item in batch.good] == ["RGB", "RGB", "RGB", "L"]
    with Extractor(model, []) as extractor:  # no names: every layer
        stats = extractor(batch.pixels)
    result: dict[str, dict[str, dict[str, list[float]]]] = {name: {} for name in IMAGES}
    for layer, values in stats.items():  # values: [image, unit, (mean, max, min)]
        units = values.shape[1]
        for index, name in enumerate(IMAGES):
            per_unit = values[index]
            entry = {"all": [per_unit[:, 0].mean().item(), per_unit[:, 1].max().item(), per_unit[:, 2].min().item()]}
            for unit in (0, units // 3, 2 * units // 3, units - 1):
                entry[str(unit)] = per_unit[unit].tolist()
            result[name][layer] = entry
    return result


def test_extraction_matches_the_golden_stats(tmp_path: Path) -> None:
    got = compute(tmp_path)
    if REGEN:
        rounded = {i: {la: {k: [float(f"{v:.8g}") for v in vs] for k, vs in e.items()} for la, e in g.items()}
                   for i, g in got.items()}  # fmt: skip
        header = {"seed": SEED, "torch": torch.__version__, "torchvision": torchvision.__version__,
                  "made_by": "UNITSCOPE_REGEN_EXPECT=1 python -m pytest tests/test_golden_stats.py"}  # fmt: skip
        text = json.dumps({"about": header, "stats": rounded}, indent=1)
        text = re.sub(r"\[\s+([^][]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)  # a list a line
        EXPECT.write_text(text + "\n", encoding="utf-8")
        pytest.skip(f"wrote {EXPECT}")
    expected = json.loads(EXPECT.read_text(encoding="utf-8"))["stats"]
    assert list(got) == list(expected)
    for image, layers in expected.items():
        assert list(got[image]) == list(layers), image
        for layer, entry in layers.items():
            assert list(got[image][layer]) == list(entry), (image, layer)
            want = np.array(list(entry.values()))
            have = np.array(list(got[image][layer].values()))
            atol = ATOL_OF_LAYER_SCALE * np.abs(want).max()
            np.testing.assert_allclose(have, want, rtol=RTOL, atol=atol, err_msg=f"{image} {layer}")
