"""Unit maps through the network: alignment of a map with the image, and a real run's stored maps
against the maps computed directly and against the stats listed for each image.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from fixtures import REPO, clean_env, make_settings
from PIL import Image
from torch import nn

from app.main import create_app
from unitscope import schema
from unitscope.crop import network_crop
from unitscope.maps import decode
from worker.extract import Extractor
from worker.images import decode as decode_file
from worker.models import LoadedModel, get_model

F16_RTOL = 2.0**-11  # float16 rounds to 11 significant bits
# Two passes over the same image in different batches agree to ~1e-6; float16 adds its rounding.
RTOL, ATOL = 2 * F16_RTOL, 1e-3


@pytest.fixture(scope="module")
def bvlc(bvlc_weights: Path) -> LoadedModel:
    return get_model("bvlc-googlenet", weights=bvlc_weights)


@pytest.fixture(scope="module")
def googlenet() -> LoadedModel:
    """torchvision's GoogLeNet, random init under a seed: runs on a clean clone."""
    torch.manual_seed(0)
    return get_model("googlenet", weights=None)


@pytest.fixture(params=["bvlc", "googlenet"])
def model(request: pytest.FixtureRequest) -> LoadedModel:
    return request.getfixturevalue(request.param)


def brightness_unit(model: LoadedModel) -> int:
    """The conv1 unit with the largest weight sum: it responds most where the image is brightest."""
    conv = next(m for m in model.net.modules() if isinstance(m, nn.Conv2d))
    return int(conv.weight.detach().sum((1, 2, 3)).argmax())


@pytest.mark.parametrize("patch", [(40, 30), (200, 150)])  # top-left corner, in image pixels
def test_map_maximum_is_on_the_bright_patch(model: LoadedModel, patch: tuple[int, int]) -> None:
    """A 300 x 240 black image with one 48-px white square: conv1's brightness unit peaks on the square,
    located through the stored path: the map's argmax cell, stretched over network_crop's box."""
    width, height, side = 300, 240, 48
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    x0, y0 = patch
    pixels[y0 : y0 + side, x0 : x0 + side] = 255
    x = model.transform(Image.fromarray(pixels))[None]
    with Extractor(model, ["conv1"]) as extractor:
        unit_map = extractor.maps(x)["conv1"][0, brightness_unit(model)].numpy()  # 112 x 112
    h, w = unit_map.shape
    i, j = np.unravel_index(unit_map.argmax(), unit_map.shape)
    box = network_crop(json.dumps(model.preprocessing), width, height)
    # The centre of cell (i, j) in image pixels, by a uniform stretch of the map over the crop.
    cx = (box.left + (j + 0.5) / w * box.width) * width
    cy = (box.top + (i + 0.5) / h * box.height) * height
    slack = 4  # px: a 7 x 7 kernel may peak at the square's edge
    assert x0 - slack <= cx <= x0 + side + slack and y0 - slack <= cy <= y0 + side + slack, (cx, cy)


# ---------------------------------------------------------------------------------------------
# A small real run: the maps kept in the worker's one pass over the images, then the server's view of them

LAYERS = ("conv1", "mixed4c")
LIMIT = 40


@pytest.fixture(scope="module")
def maps_run(tmp_path_factory, imagenet_sample: Path, bvlc_weights: Path) -> Path:
    db = tmp_path_factory.mktemp("maps") / "maps.duckdb"
    cmd = [sys.executable, "-m", "worker", "run", "--images", str(imagenet_sample), "--db", str(db),
           "--model", "bvlc-googlenet", "--weights", str(bvlc_weights), "--layers", *LAYERS,
           "--limit", str(LIMIT), "--batch-size", "8", "--workers", "1", "--device", "cpu"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # One pass: every map comes from the first pass's heaps (worker.shown_maps), none from running the network again.
    kept = int(re.search(r"(\d+) kept from the first pass", done.stderr).group(1))
    assert "second pass:" not in done.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM unit_maps").fetchone() == (kept,)
    return db


def test_stored_maps_are_exactly_the_images_unit_pages_show(maps_run: Path) -> None:
    """Every unit's first MAP_N images of each default ranking (ranking_sql, on the published
    responses) have a map, and no other map is stored."""
    from unitscope import metrics_sql
    from unitscope.maps import SHOWN

    with duckdb.connect(str(maps_run), read_only=True) as con:
        for layer in LAYERS:
            stored = set(con.execute("SELECT unit, image_id FROM unit_maps WHERE layer = ?", [layer]).fetchall())
            units = con.execute("SELECT units FROM layers WHERE layer = ?", [layer]).fetchone()[0]
            shown = set()
            for unit in range(units):
                for kind, stat in SHOWN:
                    rows = con.execute(metrics_sql.ranking_sql(kind, stat), {
                        "run_id": 1, "layer": layer, "unit": unit, "category": "dog", "n": schema.MAP_N}).fetchall()
                    shown |= {(unit, r[0]) for r in rows}
            assert stored == shown, layer


def test_stored_maps_equal_the_maps_computed_directly(maps_run: Path, bvlc: LoadedModel, imagenet_sample: Path) -> None:
    with duckdb.connect(str(maps_run), read_only=True) as con:
        ids = [r[0] for r in con.execute("SELECT DISTINCT image_id FROM unit_maps ORDER BY 1 LIMIT 4").fetchall()]
        paths = dict(con.execute("SELECT image_id, path FROM images").fetchall())
        stored = con.execute(
            "SELECT layer, unit, image_id, height, width, values_f16 FROM unit_maps WHERE list_contains(?, image_id)",
            [ids],
        ).fetchall()
    x = torch.stack([bvlc.transform(decode_file(imagenet_sample / paths[i])[0]) for i in ids])
    with Extractor(bvlc, list(LAYERS)) as extractor:
        direct = extractor.maps(x)
    assert len(stored) > 100
    for layer, unit, image_id, h, w, blob in stored:
        expected = direct[layer][ids.index(image_id), unit].numpy()
        assert expected.shape == (h, w)
        np.testing.assert_allclose(decode(blob, h, w), expected, rtol=RTOL, atol=ATOL)


def test_each_listed_value_is_its_maps_max_or_min(maps_run: Path, tmp_path: Path) -> None:
    """In the JSON twin: a positive image's map has the listed max as its maximum, a negative
    image's map the listed min as its minimum; maps come with the crop and their shape."""
    with TestClient(create_app(make_settings(maps_run, tmp_path))) as client:
        for layer, unit, shape in (("conv1", 3, [112, 112]), ("mixed4c", 447, [14, 14]), ("mixed4c", 505, [14, 14])):
            body = client.get(f"/api/layers/{layer}/units/{unit}?n={schema.MAP_N}").json()
            assert all(e["map"] and e["crop"] for kind in ("positive", "near_zero", "negative") for e in body[kind])
            for e in body["positive"]:
                values = np.array(e["map"]["values"])
                assert e["map"]["shape"] == shape and values.size == shape[0] * shape[1]
                assert values.max() == pytest.approx(e["value"], rel=RTOL, abs=ATOL)
            for e in body["negative"]:
                assert min(e["map"]["values"]) == pytest.approx(e["value"], rel=RTOL, abs=ATOL)
            scale = max(abs(v) for kind in ("positive", "near_zero", "negative") for e in body[kind]
                        for v in e["map"]["values"])
            assert body["map_scale"] == scale
            for kind in ("positive", "near_zero", "negative"):  # each row on its own scale
                assert body["map_scales"][kind] == max(abs(v) for e in body[kind] for v in e["map"]["values"])
            # n beyond MAP_N: the images past it are shown without a map unless another ranking stores it.
            wider = client.get(f"/api/layers/{layer}/units/{unit}?n={schema.MAP_N + 4}").json()
            assert any(e["map"] is None for kind in ("positive", "negative") for e in wider[kind][schema.MAP_N:])
