"""The other networks: squeezenet1_1 (Caffe weights), alexnet, vgg, resnet, inception_v3; their layer
sets, pre-ReLU capture, equivalence with torchvision's own networks, and the seeded untrained control."""

from __future__ import annotations

import csv
import hashlib
import importlib
import os
import re
import shutil
from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
import torchvision
from fixtures import REPO
from model_helpers import block_outputs
from PIL import Image
from skimage import data
from torch import Tensor

import worker.model_names
from worker import cli
from worker.extract import Extractor
from worker.models import (
    DEFAULT,
    MODEL_NAMES,
    SQUEEZENET1_1,
    SQUEEZENET_LAYERS,
    CaffeTransform,
    LoadedModel,
    WeightsError,
    get_model,
    registered_models,
    state_dict_sha256,
)

# Every family, with its smallest members where they share code (googlenet and bvlc-googlenet: test_extract).
FAMILIES = ["squeezenet1_1", "alexnet", "vgg16", "vgg11_bn", "resnet18", "resnet50", "inception_v3"]
# The pool branch of these two Inception-v3 blocks has no conv and no ReLU: not part of the layer.
POOL_PASS_THROUGH = {"Mixed_6a": 768, "Mixed_7a": 1280}


@cache
def random_model(name: str) -> LoadedModel:
    """A model with seeded random weights, built once per test session."""
    return get_model(name, weights=None, seed=0)


def photos(model: LoadedModel) -> Tensor:
    """Two real photos through the model's own preprocessing."""
    return torch.stack([model.transform(Image.fromarray(photo)) for photo in (data.chelsea(), data.astronaut())])


def test_every_registered_model_is_offered_by_the_settings() -> None:
    # worker.model_names is the torch-free copy that --model's choices come from; get_model imports a model's family
    # on first use, and every family's builders register exactly the names it offers.
    assert MODEL_NAMES == tuple(sorted(worker.model_names.MODEL_NAMES))
    for module in set(worker.model_names.FAMILIES.values()):
        importlib.import_module(f"worker.models.{module}")
    assert registered_models() == MODEL_NAMES
    assert {"alexnet", "vgg16", "resnet50", "inception_v3", "googlenet", "squeezenet1_1"} <= set(MODEL_NAMES)


@pytest.mark.parametrize("name", FAMILIES)
def test_relu_of_captured_maps_is_layer_output(name: str) -> None:
    model = random_model(name)
    x = photos(model)
    with Extractor(model, []) as extractor:
        maps = extractor.maps(x)
    post = block_outputs(model, x)
    assert list(maps) == list(model.taps) and len(maps) >= 5
    for layer, pre in maps.items():
        units = model.taps[layer].units
        assert pre.shape[:2] == (2, units), layer
        assert (pre < 0).float().mean() > 0.05, layer  # really before the ReLU
        assert post[layer].shape[1] == POOL_PASS_THROUGH.get(layer, units), layer
        torch.testing.assert_close(torch.relu(pre), post[layer][:, :units].contiguous(), rtol=0, atol=0, msg=layer)


@pytest.mark.parametrize("name", FAMILIES)
def test_stages_chain_to_torchvisions_own_network(name: str) -> None:
    # The stages give the full forward, and the net computes what torchvision's computes with
    # the same state dict (ResNet's tapped blocks, Inception3's explicit re-normalisation).
    model = random_model(name)
    x = photos(model)
    if name == "inception_v3":
        reference = torchvision.models.inception_v3(weights=None, aux_logits=False, transform_input=True,
                                                    init_weights=False)  # fmt: skip
    else:
        reference = torchvision.models.get_model(name, weights=None)
    reference.load_state_dict(model.net.state_dict())
    reference.eval()
    with torch.inference_mode():
        y = x
        for _, stage in model.stages:
            y = stage(y)
        torch.testing.assert_close(y, model.net(x), rtol=0, atol=0)
        theirs = reference(x)
    torch.testing.assert_close(y, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())


def test_documented_layer_sets() -> None:
    expected = {
        "alexnet": [("conv1", 64), ("conv2", 192), ("conv3", 384), ("conv4", 256), ("conv5", 256)],
        "vgg16": [(f"conv{b}_{i}", c) for b, n, c in ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
                  for i in range(1, n + 1)],
        "vgg11_bn": [("conv1_1", 64), ("conv2_1", 128), ("conv3_1", 256), ("conv3_2", 256), ("conv4_1", 512),
                     ("conv4_2", 512), ("conv5_1", 512), ("conv5_2", 512)],
        "resnet50": [(f"layer{s}_{i}", c) for s, n, c in ((1, 3, 256), (2, 4, 512), (3, 6, 1024), (4, 3, 2048))
                     for i in range(n)],
        "squeezenet1_1": list(SQUEEZENET_LAYERS.items()),
    }  # fmt: skip
    for name, layers in expected.items():
        assert [(layer, tap.units) for layer, tap in random_model(name).taps.items()] == layers, name
    resnet = random_model("resnet50")
    assert resnet.module_name("layer3_5") == "layer3.5"
    assert resnet.taps["layer3_5"].branches[0].module == "layer3.5.residual"
    vgg = random_model("vgg11_bn").taps["conv1_1"]
    assert (vgg.module, vgg.branches[0].module, vgg.block) == ("features.1", "features.1", "features.2")  # the bn
    assert random_model("squeezenet1_1").branch_layout("fire9") == [("expand1x1", 256), ("expand3x3", 256)]
    inception = random_model("inception_v3")
    assert list(inception.taps) == ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                                    "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]  # fmt: skip
    assert [b for b, _ in inception.branch_layout("Mixed_7c")] == [
        "branch1x1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"
    ]  # fmt: skip


def readme_tables() -> dict[str, list[tuple[str, str, int]]]:
    """{model: [(layer, module, units)]} from the per-model layer tables of docs/models.md."""
    tables: dict[str, list[tuple[str, str, int]]] = {}
    current = None
    for line in (REPO / "docs" / "models.md").read_text("utf-8").splitlines():
        heading = re.fullmatch(r"#### `([\w-]+)`.*", line)
        if heading:
            current = heading.group(1)
            tables[current] = []
        elif current and re.match(r"\| \w", line) and not line.startswith("| layer |"):
            cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
            tables[current].append((cells[0], cells[1], int(cells[2].replace(",", ""))))
        elif current and (line.startswith("#") or (not line.strip() and tables[current])):
            current = None  # a heading, or the blank line that ends the model's table
    return tables


def test_readme_layer_tables_are_the_models() -> None:
    tables = readme_tables()
    documented = {"bvlc-googlenet", "googlenet", "squeezenet1_1", "alexnet", "vgg16", "resnet50", "inception_v3"}
    assert documented <= set(tables)
    for name, rows in tables.items():
        model = random_model(name)
        assert rows == [(layer, tap.module, tap.units) for layer, tap in model.taps.items()], name


def test_random_weights_are_seeded_and_recorded() -> None:
    state = torch.random.get_rng_state()
    one, again, other = (get_model("squeezenet1_1", weights=None, seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is left alone
    assert (one.weights, other.weights) == ("random(seed=1)", "random(seed=2)")
    assert one.weights_sha256 == again.weights_sha256 == state_dict_sha256(again.net) != other.weights_sha256
    for a, b in zip(one.net.parameters(), again.net.parameters()):
        assert torch.equal(a, b)
    # The Caffe GoogLeNet's random init is PyTorch's default init of its modules, seeded the same way.
    bvlc = get_model("bvlc-googlenet", weights=None, seed=1)
    assert bvlc.weights == "random(seed=1)" and bvlc.weights_sha256 == state_dict_sha256(bvlc.net)
    with pytest.raises(ValueError, match="seed only applies to random weights"):
        get_model("alexnet", weights="some.pth", seed=1)


def test_local_state_dict_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(3)
    source = torchvision.models.resnet18(weights=None).eval()
    file = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), file)
    model = get_model("resnet18", weights=file)
    assert model.weights == str(file.resolve())
    assert model.weights_sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model.net(x), source(x), rtol=0, atol=0)
    with pytest.raises(WeightsError, match=r"resnet18\.pth is not a torchvision vgg16 state dict"):
        get_model("vgg16", weights=file)
    with pytest.raises(WeightsError, match="absent.pth: no such file or folder"):
        get_model("alexnet", weights=tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="is a folder: alexnet takes a torchvision state dict file"):
        get_model("alexnet", weights=tmp_path)  # there, but a folder


@pytest.mark.parametrize("name", ["alexnet", "resnet50", "inception_v3"])
def test_preprocessing_is_the_published_weights_transforms(name: str) -> None:
    model = random_model(name)
    published = torchvision.models.get_model_weights(name).DEFAULT
    assert repr(model.transform) == repr(published.transforms())
    assert model.preprocessing["center_crop"] == list(published.transforms().crop_size)
    assert model.preprocessing["model_transform_input"] is (name == "inception_v3")
    assert model.class_names == tuple(published.meta["categories"])


def test_squeezenet_takes_bvlcs_caffe_preprocessing_at_227() -> None:
    assert isinstance(SQUEEZENET1_1.transforms(), CaffeTransform)
    model = random_model("squeezenet1_1")
    assert model.preprocessing == SQUEEZENET1_1.meta["preprocessing"]
    bvlc = get_model("bvlc-googlenet", weights=None).preprocessing
    assert model.preprocessing == {**bvlc, "center_crop": 227}
    # Short side 256, floored crop offset: a 301 x 256 image keeps columns 37..263 of 301.
    pixels = np.random.default_rng(0).integers(0, 256, (256, 301, 3), dtype=np.uint8)
    x = model.transform(Image.fromarray(pixels))
    window = pixels[14 : 14 + 227, 37 : 37 + 227, ::-1].astype(np.float32) - np.array([104.0, 117.0, 123.0])
    assert torch.equal(x, torch.from_numpy(window.astype(np.float32)).permute(2, 0, 1))


@pytest.fixture(scope="module")
def squeezenet_weights(bvlc_weights: Path) -> Path:
    """../shared/models/squeezenet1_1 (skips with the rest of ../shared)."""
    folder = bvlc_weights.parent / "squeezenet1_1"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


def test_squeezenet_loads_and_verifies_its_weights(squeezenet_weights: Path, tmp_path: Path) -> None:
    model = get_model("squeezenet1_1", weights=squeezenet_weights)
    folder = squeezenet_weights / "weights"
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.bin"))
    assert len(files) == 52
    assert model.weights_sha256 == hashlib.sha256(b"".join((folder / f).read_bytes() for f in files)).hexdigest()
    x = model.transform(Image.fromarray(data.coffee()))[None]
    with torch.inference_mode():
        assert model.class_names[int(model.net(x).argmax())] == "espresso"
    copy = tmp_path / "squeezenet1_1"
    shutil.copytree(squeezenet_weights, copy)
    damaged = copy / "weights/fire5/expand3x3_bias.bin"
    damaged.chmod(0o644)
    damaged.write_bytes(bytes(4) + damaged.read_bytes()[4:])
    with pytest.raises(WeightsError, match=r"fire5/expand3x3_bias\.bin does not match its SHA256SUMS"):
        get_model("squeezenet1_1", weights=copy)
    with pytest.raises(WeightsError, match="squeezenet1_1 has no downloadable default"):
        get_model("squeezenet1_1", weights=DEFAULT)


@pytest.mark.slow
def test_squeezenet_top1_on_the_990_one_per_class_images(squeezenet_weights: Path, imagenet_sample: Path) -> None:
    # Its README: 62.2% top-1 on the 990 EliSchwartz one-per-class photos of the shared sample
    # (reproduced exactly, 616 of 990; warping to 256 x 256 instead of the short side gives 65.7%).
    with open(imagenet_sample / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["source"].startswith("EliSchwartz/imagenet-sample-images")]
    assert len(rows) == 990 and all(Path(r["path"]).name.startswith("eliSample__") for r in rows)
    model = get_model("squeezenet1_1", weights=squeezenet_weights)
    correct = 0
    for start in range(0, len(rows), 64):
        chunk = rows[start : start + 64]
        x = torch.stack([model.transform(Image.open(imagenet_sample / r["path"]).convert("RGB")) for r in chunk])
        with torch.inference_mode():
            predicted = model.net(x).argmax(1)
        correct += int((predicted == torch.tensor([int(r["class_index"]) for r in chunk])).sum())
    assert correct / len(rows) == pytest.approx(0.622, abs=0.01)


def test_the_untrained_control_through_the_cli(
    tmp_path: Path, imagenet_sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--weights random --seed N`: each seed is its own run in one DB, recorded as random(seed=N)
    # with the digest of its initial weights; the same seed again is recognised as published.
    for name in [n for n in os.environ if n.startswith("UNITSCOPE_")]:
        monkeypatch.delenv(name)
    db = tmp_path / "control.duckdb"
    args = ["run", "--images", str(imagenet_sample), "--db", str(db), "--model", "squeezenet1_1",
            "--layers", "conv1", "fire2", "--limit", "4", "--workers", "0", "--weights", "random"]  # fmt: skip
    for seed in ("3", "4", "3"):
        assert cli.main([*args, "--seed", seed]) == cli.EXIT_OK
    with duckdb.connect(str(db), read_only=True) as con:
        runs = con.execute("SELECT model, weights, weights_sha256 FROM runs ORDER BY run_id").fetchall()
        layers = con.execute("SELECT run_id, layer, module, units FROM layers ORDER BY run_id, position").fetchall()
    expected = [get_model("squeezenet1_1", weights=None, seed=s) for s in (3, 4)]
    assert runs == [("squeezenet1_1", f"random(seed={s})", m.weights_sha256) for s, m in zip((3, 4), expected)]
    per_run = [("conv1", "features.0", 64), ("fire2", "features.3", 128)]
    assert layers == [(run, *layer) for run in (1, 2) for layer in per_run]
