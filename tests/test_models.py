"""Models by name: BVLC weights and predictions, torchvision googlenet, layer layout, preprocessing, weights entries."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from skimage import data
from torch import nn
from torchvision.models import GoogLeNet_Weights

import worker.models.layers
from worker.models import (
    BVLC_GOOGLENET,
    DEFAULT,
    GOOGLENET_LAYERS,
    MODEL_NAMES,
    CaffeLRN,
    CaffeTransform,
    WeightsError,
    get_model,
    state_dict_sha256,
)

LAYERS = list(GOOGLENET_LAYERS)
MIXED_BRANCHES = ["1x1", "3x3", "5x5", "pool_proj"]


@pytest.fixture(scope="module")
def bvlc(bvlc_weights: Path):
    """The BVLC GoogLeNet with its real weights."""
    return get_model("bvlc-googlenet", weights=bvlc_weights)


@pytest.fixture(scope="module")
def bvlc_random():
    """The BVLC architecture without weights (layout checks need no real data)."""
    return get_model("bvlc-googlenet", weights=None)


@pytest.fixture(scope="module")
def tv_random():
    """torchvision's GoogLeNet, randomly initialised (never the download)."""
    torch.manual_seed(0)
    return get_model("googlenet", weights=None)


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
    assert MODEL_NAMES[:3] == ("alexnet", "bvlc-googlenet", "googlenet")
    with pytest.raises(ValueError, match="choose one of alexnet, bvlc-googlenet, googlenet, inception_v3, resnet101"):
        get_model("inception-v3", weights=None)
    with pytest.raises(TypeError):
        get_model("googlenet", None)  # type: ignore[misc]  # weights is keyword-only


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
    same = get_model("bvlc-googlenet", weights=folder)
    assert same.weights_sha256 == bvlc.weights_sha256


def test_bvlc_missing_file_is_named(weights_copy: Path) -> None:
    (weights_copy / "weights/inception_4c/5x5_filter.bin").unlink()
    with pytest.raises(WeightsError, match=r"missing weight file .*inception_4c/5x5_filter\.bin"):
        get_model("bvlc-googlenet", weights=weights_copy)


def test_bvlc_truncated_file_is_named(weights_copy: Path) -> None:
    file = weights_copy / "weights/conv2/3x3_filter.bin"
    file.write_bytes(file.read_bytes()[:-4])
    with pytest.raises(WeightsError, match=r"conv2/3x3_filter\.bin has 442364 bytes, expected 442368"):
        get_model("bvlc-googlenet", weights=weights_copy)


def test_bvlc_checksum_mismatch_is_named(weights_copy: Path, bvlc) -> None:
    file = weights_copy / "weights/loss3/classifier_bias.bin"
    blob = bytearray(file.read_bytes())
    blob[:4] = bytes(4)  # same size, different values
    file.write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match=r"loss3/classifier_bias\.bin does not match its SHA256SUMS"):
        get_model("bvlc-googlenet", weights=weights_copy)
    # Without a SHA256SUMS the file loads, and the recorded digest tells the weights apart.
    (weights_copy / "SHA256SUMS").unlink()
    damaged = get_model("bvlc-googlenet", weights=weights_copy)
    assert damaged.net.head.classifier.bias[0].item() == 0.0
    assert damaged.weights_sha256 != bvlc.weights_sha256


def test_bvlc_needs_a_weights_folder(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no downloadable default weights"):
        get_model("bvlc-googlenet", weights=DEFAULT)
    with pytest.raises(WeightsError, match="nowhere: no such file or folder"):
        get_model("bvlc-googlenet", weights=tmp_path / "nowhere")
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match="bvlc-googlenet weights folder not found"):
        get_model("bvlc-googlenet", weights=tmp_path / "w.pth")


@pytest.mark.parametrize(
    ("width", "height", "rounding_shifts"), [(267, 256, True), (256, 267, True), (269, 256, False), (300, 256, False)]
)
def test_caffe_centre_crop_floors_its_offset(width: int, height: int, rounding_shifts: bool) -> None:
    # Short side 256, so nothing is resampled and the crop window can be read off the pixels. A
    # margin of 43 is where rounding half to even, as TF.center_crop does (21.5 -> 22), moves the
    # window a pixel from Caffe's floor (data_transformer.cpp, caffe.io); 45 (22.5 -> 22) and the
    # even 76 are where both agree.
    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    got = CaffeTransform()(Image.fromarray(pixels))
    top, left = (height - 224) // 2, (width - 224) // 2
    window = pixels[top : top + 224, left : left + 224]
    bgr = window[..., ::-1].astype(np.float32) - np.array([104.0, 117.0, 123.0], dtype=np.float32)
    assert torch.equal(got, torch.from_numpy(bgr).permute(2, 0, 1))
    rounded = np.array(TF.center_crop(Image.fromarray(pixels), 224))
    assert np.array_equal(rounded, window) != rounding_shifts


def test_caffe_transform_is_bgr_minus_mean(bvlc_random) -> None:
    x = bvlc_random.transform(Image.new("RGB", (500, 300), (10, 20, 30)))
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert torch.equal(x[0], torch.full((224, 224), 30.0 - 104))  # B
    assert torch.equal(x[1], torch.full((224, 224), 20.0 - 117))  # G
    assert torch.equal(x[2], torch.full((224, 224), 10.0 - 123))  # R


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("images_per_group", [1, 2, 3])
@pytest.mark.parametrize("beta", [0.75, 0.6])  # Caffe's (the rsqrt path) and another (pow)
def test_caffe_lrn_matches_torch(memory_format: torch.memory_format, images_per_group: int, beta: float) -> None:
    torch.manual_seed(0)
    x = (torch.randn(3, 64, 9, 7) * 300).relu().contiguous(memory_format=memory_format)
    ours = CaffeLRN(5, alpha=1e-4, beta=beta, k=1.0)
    ours.chunk_bytes = images_per_group * x[0].numel() * 4  # exercise the grouping
    # torch's LRN in float64, as the exact value: ours is float32
    reference = nn.LocalResponseNorm(5, alpha=1e-4, beta=beta, k=1.0)(x.double()).float()
    got = ours(x)
    torch.testing.assert_close(got, reference, rtol=1e-6, atol=0)
    assert got.is_contiguous(memory_format=memory_format)
    assert not torch.allclose(got, x, rtol=1e-3)  # the normalisation does something at this scale


@pytest.mark.parametrize("name", ["bvlc_random", "tv_random"])
def test_layer_layout(name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(name)
    assert list(model.taps) == LAYERS
    assert {layer: tap.units for layer, tap in model.taps.items()} == GOOGLENET_LAYERS
    assert sum(tap.units for tap in model.taps.values()) == 5808
    assert model.branch_layout("mixed4c") == [("1x1", 128), ("3x3", 256), ("5x5", 64), ("pool_proj", 64)]
    assert model.branch_layout("conv3") == [("conv", 192)]
    for layer in LAYERS:
        branches = [b for b, _ in model.branch_layout(layer)]
        assert branches == (["conv"] if layer.startswith("conv") else MIXED_BRANCHES)
        assert len(model.unit_branches(layer)) == GOOGLENET_LAYERS[layer]
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
    # The layer table in worker/models/layers.py's docstring (copied to docs/models.md) is the real one.
    bvlc, tv = bvlc_random, tv_random
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in worker.models.layers.__doc__.splitlines()
        if line.startswith(("| conv", "| mixed"))
    ]
    assert [row[0] for row in rows] == LAYERS
    for layer, caffe, torchvision_name, units, split in rows:
        assert bvlc.module_name(layer) == caffe and tv.module_name(layer) == torchvision_name
        assert int(units) == GOOGLENET_LAYERS[layer]
        for model in (bvlc, tv):
            channels = [c for _, c in model.branch_layout(layer)]
            assert split == ("(one conv)" if layer.startswith("conv") else " / ".join(map(str, channels)))


@pytest.mark.parametrize("name", ["bvlc_random", "tv_random"])
def test_select_layers(name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(name)
    with pytest.raises(ValueError, match=r"'mixed6a'.*valid layers are: conv1, conv2, conv3, mixed3a"):
        model.select_layers(["conv1", "mixed6a"])
    with pytest.raises(ValueError, match="'inception_4c'"):
        model.select_layers("inception_4c")
    assert model.select_layers([]) == LAYERS == model.select_layers(())  # none named: all, depth order
    assert model.select_layers(["mixed5b", "conv1", "mixed5b"]) == ["conv1", "mixed5b"]
    assert model.select_layers("mixed4c") == ["mixed4c"]


def test_googlenet_without_weights_runs(tv_random) -> None:
    model = tv_random
    # Unseeded (the fixture seeds the global RNG itself): the digest of the initial parameters.
    assert not model.net.training and model.weights == "random(unseeded)"
    assert model.weights_sha256 == state_dict_sha256(model.net)
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


def test_googlenet_renormalises_its_input_like_transform_input(tv_random) -> None:
    # The net is built with transform_input=False; its first stage does the same arithmetic.
    model = tv_random
    assert model.net.transform_input is False and model.stages[0] == ("renormalise", model.net.renormalise)
    torch.manual_seed(0)  # the fixture's seed: the same random weights
    reference = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=True)
    reference.eval()
    x = torch.stack([model.transform(Image.fromarray(photo)) for photo in (data.chelsea(), data.coffee())])
    blocks = ("conv1", "inception3a", "inception4c", "inception5b")
    outputs: dict[str, list[torch.Tensor]] = {block: [] for block in blocks}
    handles = [
        net.get_submodule(block).register_forward_hook(lambda m, i, o, block=block: outputs[block].append(o.clone()))
        for net in (model.net, reference)
        for block in blocks
    ]
    try:
        with torch.inference_mode():
            ours, theirs = model.net(x), reference(x)
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())
    for block, (mine, torchvisions) in outputs.items():  # post-ReLU block outputs
        assert mine.abs().max() > 0, block
        torch.testing.assert_close(mine, torchvisions, rtol=1e-5, atol=1e-5 * torchvisions.abs().max().item())
    # The re-normalisation is part of the net, not of its state dict: the files stay torchvision's.
    assert model.net.state_dict().keys() == reference.state_dict().keys()


def test_weights_entries_carry_transforms_and_meta(bvlc_random, tv_random) -> None:
    assert isinstance(BVLC_GOOGLENET.transforms(), CaffeTransform)
    assert bvlc_random.preprocessing == BVLC_GOOGLENET.meta["preprocessing"] == BVLC_GOOGLENET.transforms().describe()
    assert bvlc_random.class_names == tuple(BVLC_GOOGLENET.meta["categories"])
    assert bvlc_random.class_names[285] == "Egyptian cat" and bvlc_random.class_wnids[285] == "n02124075"
    published = GoogLeNet_Weights.IMAGENET1K_V1
    assert repr(tv_random.transform) == repr(published.transforms())
    assert tv_random.class_wnids == bvlc_random.class_wnids and len(tv_random.class_wnids) == 1000


@pytest.mark.parametrize("aux_logits", [False, True])
def test_googlenet_local_state_dict_round_trips(tmp_path: Path, aux_logits: bool) -> None:
    torch.manual_seed(1)
    # With aux heads, the file looks like torchvision's published one; they are dropped on load.
    source = torchvision.models.googlenet(
        weights=None, aux_logits=aux_logits, transform_input=True, init_weights=True
    ).eval()
    file = tmp_path / "googlenet.pth"
    torch.save(source.state_dict(), file)
    model = get_model("googlenet", weights=file)
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
    model = get_model("googlenet", weights=DEFAULT)
    assert model.weights_sha256.startswith(name.split("-")[1].split(".")[0])
    assert "IMAGENET1K_V1" in model.weights
    assert top5(model, data.coffee())[0][0] == "espresso"


def test_weights_written_as_a_missing_path_are_named_plainly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for spelled in ("~/bvlc_googlenet", "./bvlc_googlenet", "../nowhere/googlenet.pth"):
        with pytest.raises(WeightsError, match=f"^weights {re.escape(spelled)}: no such file or folder$"):
            get_model("googlenet", weights=spelled)
    with pytest.raises(WeightsError, match="googlenet state dict not found: bvlc_googlenet"):  # a bare name
        get_model("googlenet", weights="bvlc_googlenet")


def test_googlenet_bad_state_dict_is_named(tmp_path: Path) -> None:
    file = tmp_path / "broken.pth"
    file.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="broken.pth"):
        get_model("googlenet", weights=file)
    torch.save({"fc.weight": torch.zeros(3)}, file)
    with pytest.raises(WeightsError, match="broken.pth"):
        get_model("googlenet", weights=file)
    with pytest.raises(WeightsError, match=r"^weights .*absent\.pth: no such file or folder$"):
        get_model("googlenet", weights=tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="is a folder: googlenet takes a torchvision state dict file"):
        get_model("googlenet", weights=tmp_path)  # there, but a folder
    # A file torch refuses to unpickle with weights_only: said so, without torch's advice to lift the guard.
    import pickle
    file.write_bytes(pickle.dumps({"fc.weight": object()}, protocol=2))
    with pytest.raises(WeightsError, match="not a file of tensors saved by torch.save") as refused:
        get_model("googlenet", weights=file)
    assert "weights_only=False" not in str(refused.value)
