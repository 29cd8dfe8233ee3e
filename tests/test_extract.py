"""Pre-ReLU capture: relu(pre) == the layer's output, reductions, stopping early, hook hygiene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import block_outputs
from PIL import Image
from skimage import data
from torch import Tensor, nn

from unitscope.schema import basis_staging_layer
from worker.basis import rotation
from worker.extract import Extractor, resolve_device
from worker.models import GOOGLENET_LAYERS, LoadedModel, get_model

LAYERS = list(GOOGLENET_LAYERS)


@pytest.fixture(scope="module")
def bvlc(bvlc_weights: Path) -> LoadedModel:
    """The BVLC GoogLeNet with its real weights."""
    return get_model("bvlc-googlenet", weights=bvlc_weights)


@pytest.fixture(scope="module")
def googlenet() -> LoadedModel:
    """torchvision's GoogLeNet, random init, batch-norm statistics calibrated on real images.

    Without calibration a random network's activations shrink ~10x per layer; with it every layer
    has realistic, sign-changing pre-ReLU maps, so the checks below are not trivially satisfied.
    """
    torch.manual_seed(0)
    model = get_model("googlenet", weights=None)
    for module in model.net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    model.net.train()
    with torch.no_grad():
        model.net(images(model))
    model.net.eval()
    return model


def images(model: LoadedModel) -> Tensor:
    """Three real photos through the model's own preprocessing: [3, 3, 224, 224]."""
    photos = (data.chelsea(), data.coffee(), data.astronaut())
    return torch.stack([model.transform(Image.fromarray(photo)) for photo in photos])


@pytest.fixture(params=["bvlc", "googlenet"])
def model(request: pytest.FixtureRequest) -> LoadedModel:
    return request.getfixturevalue(request.param)


def test_relu_of_captured_maps_is_layer_output(model: LoadedModel) -> None:
    x = images(model)
    with Extractor(model, LAYERS) as extractor:
        maps = extractor.maps(x)
    post = block_outputs(model, x)
    assert list(maps) == list(LAYERS)
    for layer in LAYERS:
        pre = maps[layer]
        assert pre.shape[:2] == (3, GOOGLENET_LAYERS[layer]) and pre.dtype == torch.float32
        # Pre-ReLU means the maps really go negative (else this check would be vacuous).
        assert (pre < 0).float().mean() > 0.05, layer
        torch.testing.assert_close(torch.relu(pre), post[layer].contiguous(), rtol=0, atol=0, msg=layer)


def test_stats_are_reductions_of_the_maps(model: LoadedModel) -> None:
    x = images(model)
    with Extractor(model, LAYERS) as extractor:
        stats = extractor(x)
        maps = extractor.maps(x)
    assert list(stats) == list(LAYERS)
    for layer in LAYERS:
        got = stats[layer]
        assert got.shape == (3, GOOGLENET_LAYERS[layer], 3)
        assert got.dtype == torch.float32 and got.device.type == "cpu"
        full = maps[layer]
        expected = torch.stack((full.mean((2, 3)), full.amax((2, 3)), full.amin((2, 3))), dim=2)
        scale = full.abs().max()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6 * scale, msg=layer)
        assert (got[..., 1] >= got[..., 0]).all() and (got[..., 0] >= got[..., 2]).all()


def test_branch_channels_in_caffe_order(bvlc: LoadedModel) -> None:
    # mixed4c's channels 128-383 are the 3x3 branch: its conv output, nothing else.
    x = images(bvlc)[:1]
    with Extractor(bvlc, ["mixed4c"]) as extractor:
        maps = extractor.maps(x)["mixed4c"]
    block = bvlc.net.inception_4c
    captured: list[Tensor] = []
    handle = block.conv_3x3.conv.register_forward_hook(lambda m, i, o: captured.append(o.clone()))
    with torch.inference_mode():
        bvlc.net(x)
    handle.remove()
    assert torch.equal(maps[:, 128:384], captured[0].contiguous())


def count_calls(modules: list[nn.Module]) -> tuple[list[int], list]:
    """Forward-call counters on modules; returns (counts, handles)."""
    counts = [0] * len(modules)

    def hook(index: int):
        def bump(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            counts[index] += 1

        return bump

    return counts, [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]


def test_stops_after_the_deepest_layer(model: LoadedModel) -> None:
    x = images(model)[:1]
    first = model.net.get_submodule(model.taps["conv1"].block)
    # Everything that computes on conv1's output: every later block, and the classifier.
    later = [model.net.get_submodule(model.taps[layer].block) for layer in LAYERS[1:]]
    later.append(model.net.head.classifier if model.name == "bvlc-googlenet" else model.net.fc)
    counts, handles = count_calls([first, *later])
    try:
        with Extractor(model, ["conv1"]) as extractor:
            alone = extractor(x)["conv1"]
            assert len(extractor.stages_run) == model.taps["conv1"].stage + 1
        assert counts[0] == 1 and sum(counts[1:]) == 0
        with Extractor(model, ["mixed4c"]) as extractor:
            extractor(x)
        index_5b = LAYERS.index("mixed5b")
        assert counts[LAYERS.index("mixed4c")] == 1 and counts[index_5b] == 0 and counts[-1] == 0
    finally:
        for handle in handles:
            handle.remove()
    # The same layer gives identical values whether or not deeper layers are requested.
    with Extractor(model, LAYERS) as extractor:
        everything = extractor(x)
    assert torch.equal(alone, everything["conv1"])
    with Extractor(model, ["mixed4c"]) as extractor:
        assert torch.equal(extractor(x)["mixed4c"], everything["mixed4c"])


def test_stages_chain_to_the_full_forward(model: LoadedModel) -> None:
    x = images(model)
    with torch.inference_mode():
        y = x
        for _, stage in model.stages:
            y = stage(y)
        torch.testing.assert_close(y, model.net(x), rtol=0, atol=0)


def test_channels_last_gives_the_same_numbers(model: LoadedModel) -> None:
    x = images(model)
    layers = ["conv1", "conv3", "mixed3b", "mixed4c", "mixed5b"]
    with Extractor(model, layers, channels_last=False) as extractor:
        plain = extractor(x)
    with Extractor(model, layers, channels_last=True) as extractor:
        fast = extractor(x)
    for layer in layers:
        scale = plain[layer].abs().max()
        torch.testing.assert_close(fast[layer], plain[layer], rtol=1e-4, atol=1e-4 * scale, msg=layer)


def test_layers_come_back_in_depth_order(bvlc: LoadedModel) -> None:
    with Extractor(bvlc, ["mixed3a", "conv2", "mixed3a"]) as extractor:
        out = extractor(images(bvlc)[:2])
    assert list(out) == ["conv2", "mixed3a"]
    with pytest.raises(ValueError, match="valid layers are: conv1"):
        Extractor(bvlc, ["inception_4c"])


def test_hooks_are_removed_on_close(bvlc: LoadedModel) -> None:
    def hook_count() -> int:
        return sum(len(m._forward_hooks) for m in bvlc.net.modules())

    before = hook_count()
    x = images(bvlc)[:1]
    with Extractor(bvlc, LAYERS) as one, Extractor(bvlc, ["conv1"]) as two:
        # Two extractors on one network do not see each other's calls.
        assert list(two(x)) == ["conv1"]
        assert list(one(x)) == list(LAYERS)
        assert hook_count() == before + 4 * 9 + 3 + 1
    assert hook_count() == before
    with pytest.raises(RuntimeError, match="closed"):
        one(x)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_random_bases_are_the_maps_rotated_then_reduced(model: LoadedModel) -> None:
    """Each basis direction's stats are those of sum_c Q[d, c] * map_c, computed here in float64 from the maps."""
    x = images(model)
    with Extractor(model, LAYERS, bases=2, basis_layers=LAYERS) as extractor:
        stats = extractor(x)
        maps = extractor.maps(x)
    assert list(stats) == [*LAYERS, *(basis_staging_layer(layer, b) for layer in LAYERS for b in range(2))]
    with Extractor(model, LAYERS, bases=2, basis_layers=["mixed4c"]) as extractor:
        assert list(extractor(x)) == [*LAYERS, basis_staging_layer("mixed4c", 0), basis_staging_layer("mixed4c", 1)]
    with pytest.raises(ValueError, match="not among the layers"):
        Extractor(model, ["conv1"], bases=2, basis_layers=["mixed4c"])
    for layer in LAYERS:
        full = maps[layer].double().numpy()
        for b in range(2):
            rotated = np.einsum("dc,nchw->ndhw", rotation(full.shape[1], b), full)
            expected = np.stack((rotated.mean((2, 3)), rotated.max((2, 3)), rotated.min((2, 3))), axis=2)
            got = stats[basis_staging_layer(layer, b)].numpy()
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(full).max(), err_msg=f"{layer} {b}")
        # A rotation is not a permutation: no direction is one of the units.
        assert not np.isclose(stats[basis_staging_layer(layer, 0)][..., 1].numpy()[:, :, None],
                              stats[layer][..., 1].numpy()[:, None, :]).all(axis=0).any()


def test_rotations_are_orthogonal_seeded_and_distinct() -> None:
    q = rotation(64, 3)
    np.testing.assert_allclose(q @ q.T, np.eye(64), atol=1e-12)
    np.testing.assert_array_equal(q, rotation(64, 3))
    assert not np.allclose(q, rotation(64, 4))
    # Haar: an entry is as often positive as negative. A bare Householder QR makes Q[0, 0] = -|x00| / |x0| < 0 on
    # every draw (mean about -0.28 for 8 x 8); over 200 draws the mean is within 0.1 of 0 (its sd is 0.025).
    assert abs(np.mean([rotation(8, seed)[0, 0] for seed in range(200)])) < 0.1
    assert np.mean([np.linalg.qr(np.random.default_rng(s).standard_normal((8, 8)))[0][0, 0] for s in range(200)]) < -0.2
    with pytest.raises(ValueError):
        rotation(0, 0)
