"""Models by name: BVLC weights and predictions, torchvision googlenet, layer layout, preprocessing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from skimage import data
from torch import nn
from torchvision.models import GoogLeNet_Weights

from worker.models import (
    CaffeLRN,
    WeightsError,
    check_layers,
    load_model,
)
from worker.models import GOOGLENET_LAYERS as LAYER_UNITS

LAYERS = tuple(LAYER_UNITS)

MIXED_BRANCHES = ["1x1", "3x3", "5x5", "pool_proj"]


@pytest.fixture(scope="module")
def bvlc(bvlc_weights: Path):
    """The BVLC GoogLeNet with its real weights."""
    return load_model("bvlc-googlenet", weights=bvlc_weights)


@pytest.fixture(scope="module")
def bvlc_random():
    """The BVLC architecture without weights (layout checks need no real data)."""
    return load_model("bvlc-googlenet", weights=None)


@pytest.fixture(scope="module")
def tv_random():
    """torchvision's GoogLeNet, randomly initialised (never the download)."""
    torch.manual_seed(0)
    return load_model("googlenet", weights=None)


@pytest.fixture()
def weights_copy(bvlc_weights: Path, tmp_path: Path) -> Path:
    """A writable copy of the BVLC folder (weights/ and SHA256SUMS) to damage."""
    target = tmp_path / "bvlc"
    shutil.copytree(bvlc_weights / "weights", target / "weights")
    shutil.copy(bvlc_weights / "SHA256SUMS", target / "SHA256SUMS")
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the shared originals are read-only
    return target


def top5(model, image) -> list[tuple[str, float]]:
    """The model's five most probable classes for one RGB array, with its own preprocessing."""
    x = model.transform(Image.fromarray(image))[None]
    with torch.inference_mode():
        probs = model.net(x).softmax(1)[0]
    values, indices = probs.topk(5)
    return [(model.class_names[i], float(p)) for p, i in zip(values, indices)]


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(ValueError, match="bvlc-googlenet, googlenet"):
        load_model("inception-v3", weights=None)


def test_bvlc_chelsea_is_egyptian_cat(bvlc) -> None:
    # Reference top-5 from the BVLC README (Caffe preprocessing).
    expected = [
        ("Egyptian cat", 0.50),
        ("tiger cat", 0.27),
        ("tabby, tabby cat", 0.12),
        ("lynx, catamount", 0.11),
        ("tiger, Panthera tigris", 0.004),
    ]
    got = top5(bvlc, data.chelsea())
    assert [name for name, _ in got] == [name for name, _ in expected]
    for (_, p), (_, q) in zip(got, expected):
        assert p == pytest.approx(q, abs=0.01)


def test_bvlc_coffee_is_espresso(bvlc) -> None:
    name, p = top5(bvlc, data.coffee())[0]
    assert name == "espresso"
    assert p == pytest.approx(0.90, abs=0.01)


def test_bvlc_rgb_input_would_be_wrong(bvlc) -> None:
    # The channel order matters: feeding RGB instead of BGR loses "espresso" (README).
    x = bvlc.transform(Image.fromarray(data.coffee()))[None]
    with torch.inference_mode():
        probs = bvlc.net(x.flip(1)).softmax(1)[0]
    assert float(probs[bvlc.class_names.index("espresso")]) < 0.5


def test_bvlc_records_weights(bvlc, bvlc_weights: Path) -> None:
    folder = bvlc_weights / "weights"
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.bin"))
    assert len(files) == 116
    digest = hashlib.sha256()
    for name in files:
        digest.update((folder / name).read_bytes())
    assert bvlc.weights_sha256 == digest.hexdigest()
    assert bvlc.weights == str(folder.resolve())
    assert bvlc.preprocessing["channels"] == "BGR"
    assert bvlc.preprocessing["mean_bgr"] == [104.0, 117.0, 123.0]
    # The weights/ folder itself is accepted too and loads the same bytes.
    same = load_model("bvlc-googlenet", weights=folder)
    assert same.weights_sha256 == bvlc.weights_sha256


def test_bvlc_missing_file_is_named(weights_copy: Path) -> None:
    (weights_copy / "weights/inception_4c/5x5_filter.bin").unlink()
    with pytest.raises(WeightsError, match=r"missing weight file .*inception_4c/5x5_filter\.bin"):
        load_model("bvlc-googlenet", weights=weights_copy)


def test_bvlc_truncated_file_is_named(weights_copy: Path) -> None:
    file = weights_copy / "weights/conv2/3x3_filter.bin"
    file.write_bytes(file.read_bytes()[:-4])
    with pytest.raises(WeightsError, match=r"conv2/3x3_filter\.bin has 442364 bytes, expected 442368"):
        load_model("bvlc-googlenet", weights=weights_copy)


def test_bvlc_checksum_mismatch_is_named(weights_copy: Path, bvlc) -> None:
    file = weights_copy / "weights/loss3/classifier_bias.bin"
    blob = bytearray(file.read_bytes())
    blob[:4] = bytes(4)  # same size, different values
    file.write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match=r"loss3/classifier_bias\.bin does not match its SHA256SUMS"):
        load_model("bvlc-googlenet", weights=weights_copy)
    # Without a SHA256SUMS the file loads, and the recorded digest tells the weights apart.
    (weights_copy / "SHA256SUMS").unlink()
    damaged = load_model("bvlc-googlenet", weights=weights_copy)
    assert damaged.net.head.classifier.bias[0].item() == 0.0
    assert damaged.weights_sha256 != bvlc.weights_sha256


def test_bvlc_needs_a_weights_folder(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="folder"):
        load_model("bvlc-googlenet")
    with pytest.raises(WeightsError, match="not found"):
        load_model("bvlc-googlenet", weights=tmp_path / "nowhere")


def test_caffe_transform_is_bgr_minus_mean(bvlc_random) -> None:
    x = bvlc_random.transform(Image.new("RGB", (500, 300), (10, 20, 30)))
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert torch.equal(x[0], torch.full((224, 224), 30.0 - 104))  # B
    assert torch.equal(x[1], torch.full((224, 224), 20.0 - 117))  # G
    assert torch.equal(x[2], torch.full((224, 224), 10.0 - 123))  # R


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("images_per_group", [1, 2, 3])
def test_caffe_lrn_matches_torch(memory_format: torch.memory_format, images_per_group: int) -> None:
    torch.manual_seed(0)
    x = (torch.randn(3, 64, 9, 7) * 300).relu().contiguous(memory_format=memory_format)
    ours = CaffeLRN(5, alpha=1e-4, beta=0.75, k=1.0)
    ours.chunk_bytes = images_per_group * x[0].numel() * 4  # exercise the grouping
    reference = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)(x)
    got = ours(x)
    torch.testing.assert_close(got, reference, rtol=1e-6, atol=0)
    assert got.is_contiguous(memory_format=memory_format)
    assert not torch.allclose(got, x, rtol=1e-3)  # the normalisation does something at this scale


@pytest.mark.parametrize("name", ["bvlc_random", "tv_random"])
def test_layer_layout(name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(name)
    assert list(model.taps) == list(LAYERS)
    assert {layer: tap.units for layer, tap in model.taps.items()} == LAYER_UNITS
    assert sum(tap.units for tap in model.taps.values()) == 5808
    assert model.branch_layout("mixed4c") == [("1x1", 128), ("3x3", 256), ("5x5", 64), ("pool_proj", 64)]
    assert model.branch_layout("conv3") == [("conv", 192)]
    for layer in LAYERS:
        branches = [b for b, _ in model.branch_layout(layer)]
        assert branches == (["conv"] if layer.startswith("conv") else MIXED_BRANCHES)
        assert len(model.unit_branches(layer)) == LAYER_UNITS[layer]
        tap = model.taps[layer]
        # Every tapped module and block exists; stages are in depth order.
        for branch in tap.branches:
            model.net.get_submodule(branch.module)
        model.net.get_submodule(tap.block)
    stages = [model.taps[layer].stage for layer in LAYERS]
    assert stages == sorted(stages) and len(set(stages)) == len(stages)
    assert model.unit_branches("mixed4c")[127:129] == ["1x1", "3x3"]
    assert len(model.class_names) == 1000 and len(model.class_wnids) == 1000


def test_module_names(bvlc_random, tv_random) -> None:
    bvlc, tv = bvlc_random, tv_random
    assert [bvlc.module_name(layer) for layer in ("conv1", "conv2", "conv3", "mixed4c")] == [
        "conv1/7x7_s2",
        "conv2/3x3_reduce",
        "conv2/3x3",
        "inception_4c/output",
    ]
    assert [tv.module_name(layer) for layer in ("conv1", "conv2", "conv3", "mixed4c")] == [
        "conv1",
        "conv2",
        "conv3",
        "inception4c",
    ]


def test_documented_mapping_matches_the_models(bvlc_random, tv_random) -> None:
    # The layer table in worker/models.py's docstring (copied to the README) is the real one.
    import worker.models

    bvlc, tv = bvlc_random, tv_random
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in worker.models.__doc__.splitlines()
        if line.startswith(("| conv", "| mixed"))
    ]
    assert [row[0] for row in rows] == list(LAYERS)
    for layer, caffe, torchvision_name, units, split in rows:
        assert bvlc.module_name(layer) == caffe and tv.module_name(layer) == torchvision_name
        assert int(units) == LAYER_UNITS[layer]
        for model in (bvlc, tv):
            channels = [c for _, c in model.branch_layout(layer)]
            assert split == ("(one conv)" if layer.startswith("conv") else " / ".join(map(str, channels)))


def test_unknown_layer_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'mixed6a'.*conv1, conv2, conv3, mixed3a"):
        check_layers(["conv1", "mixed6a"])
    with pytest.raises(ValueError, match="no layers"):
        check_layers([])
    assert check_layers(["mixed5b", "conv1", "mixed5b"]) == ["conv1", "mixed5b"]


def test_googlenet_without_weights_runs(tv_random) -> None:
    model = tv_random
    assert not model.net.training and model.weights_sha256 == "none"
    published = GoogLeNet_Weights.IMAGENET1K_V1
    assert model.class_names == tuple(published.meta["categories"])
    reference = published.transforms()
    assert model.preprocessing["mean"] == list(reference.mean)
    assert model.preprocessing["std"] == list(reference.std)
    assert model.preprocessing["center_crop"] == list(reference.crop_size)
    x = model.transform(Image.fromarray(data.chelsea()))
    assert x.shape == (3, 224, 224)
    torch.testing.assert_close(x, reference(Image.fromarray(data.chelsea())))
    with torch.inference_mode():
        logits = model.net(x[None])
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


@pytest.mark.parametrize("aux_logits", [False, True])
def test_googlenet_local_state_dict_round_trips(tmp_path: Path, aux_logits: bool) -> None:
    import torchvision

    torch.manual_seed(1)
    # With aux heads, the file looks like torchvision's published one; they are dropped on load.
    source = torchvision.models.googlenet(
        weights=None, aux_logits=aux_logits, transform_input=True, init_weights=True
    ).eval()
    file = tmp_path / "googlenet.pth"
    torch.save(source.state_dict(), file)
    model = load_model("googlenet", weights=file)
    assert model.net.aux1 is None and model.net.aux2 is None
    assert model.weights_sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    assert model.weights == str(file.resolve())
    x = torch.randn(2, 3, 96, 96)  # any size >= 15 px runs; small keeps the test quick
    with torch.inference_mode():
        torch.testing.assert_close(model.net(x), source(x), rtol=0, atol=0)


def test_googlenet_published_weights_when_cached() -> None:
    # Runs only where torchvision has already downloaded the file: never touches the network.
    published = GoogLeNet_Weights.IMAGENET1K_V1
    name = Path(published.url).name  # googlenet-<sha256 prefix>.pth
    if not (Path(torch.hub.get_dir()) / "checkpoints" / name).is_file():
        pytest.skip(f"{name} is not in torchvision's cache")
    model = load_model("googlenet")
    assert model.weights_sha256.startswith(name.split("-")[1].split(".")[0])
    assert "IMAGENET1K_V1" in model.weights
    assert top5(model, data.coffee())[0][0] == "espresso"


def test_googlenet_bad_state_dict_is_named(tmp_path: Path) -> None:
    file = tmp_path / "broken.pth"
    file.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="broken.pth"):
        load_model("googlenet", weights=file)
    torch.save({"fc.weight": torch.zeros(3)}, file)
    with pytest.raises(WeightsError, match="broken.pth"):
        load_model("googlenet", weights=file)
    with pytest.raises(WeightsError, match="not found"):
        load_model("googlenet", weights=tmp_path / "absent.pth")
