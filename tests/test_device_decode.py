"""--decode gpu on the CPU: decode_jpeg and the transforms on tensors against the PIL path, odd files, a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import GoogLeNet_Weights

from worker.device_decode import make_device_loader
from worker.images import (
    Batch,
    FileEntry,
    ImageDataset,
    list_image_files,
    make_loader,
    spread_subset,
)
from worker.models import CaffeTransform
from worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
# Measured on the CPU (libjpeg-turbo in both decoders): at most one 8-bit level anywhere, and on
# 0.07% (Caffe, v2 resize) to 15% (torchvision preset, v1 resize) of the values of the resized
# crops; the decoded images themselves are equal. nvJPEG on a GPU differs more (bench/device_check.py).
MAX_LEVELS = 1.0


def both_paths(root: Path, files: list[tuple[int, str]], transform, batch_size: int = 8) -> tuple[Batch, Batch]:
    """Every file through the PIL loader and the device loader, each as one merged batch."""
    pil = list(make_loader(ImageDataset(root, files, transform), batch_size=batch_size, workers=0, pin_memory=False))
    dev = list(make_device_loader(root, files, transform, batch_size=batch_size, workers=0, device=CPU))
    return merged(pil), merged(dev)


def merged(batches: list[Batch]) -> Batch:
    pixels = [b.pixels for b in batches if b.pixels is not None]
    return Batch(torch.cat(pixels) if pixels else None, [g for b in batches for g in b.good],
                 [x for b in batches for x in b.bad])  # fmt: skip


def levels(pixels: torch.Tensor, transform) -> torch.Tensor:
    """Transform outputs back on the 0..255 scale of the crop, unrounded (to compare in 8-bit levels)."""
    if isinstance(transform, CaffeTransform):
        return pixels
    std = torch.tensor(transform.std).view(1, 3, 1, 1)
    return pixels * std * 255.0


def of_mode(root: Path, mode: str, count: int) -> list[FileEntry]:
    """The first `count` files of the folder whose PIL mode is `mode`."""
    found = []
    for entry in list_image_files(root):
        with Image.open(root / entry.path) as image:
            if image.mode == mode:
                found.append(entry)
        if len(found) == count:
            return found
    raise AssertionError(f"fewer than {count} {mode} images in {root}")


def rescaled_sample(imagenet_sample: Path, out: Path, count: int) -> list[tuple[int, str]]:
    """Sample JPEGs, colour and grayscale, re-saved smaller and larger than the crop (both resize directions)."""
    entries = spread_subset(list_image_files(imagenet_sample), count)
    grays = of_mode(imagenet_sample, "L", 3)
    (out / "n0").mkdir(parents=True)
    files = []
    for i, entry in enumerate([*entries, *grays]):
        with Image.open(imagenet_sample / entry.path) as image:
            for factor in (0.7, 2.2):
                size = (round(image.width * factor), round(image.height * factor * 1.25))
                path = out / "n0" / f"{i}_{factor}.jpg"
                image.resize(size, Image.Resampling.BICUBIC).save(path, quality=90)
                files.append((len(files), f"n0/{path.name}"))
    return files


@pytest.mark.parametrize("transform", [CaffeTransform(), GoogLeNet_Weights.IMAGENET1K_V1.transforms()],
                         ids=["caffe", "torchvision"])  # fmt: skip
def test_device_path_is_within_one_level_of_pil_on_real_jpegs(imagenet_sample, tmp_path, transform):
    files = [(i, e.path) for i, e in enumerate(spread_subset(list_image_files(imagenet_sample), 24))]
    files += [(100 + i, f"big/{p}") for i, (_, p) in enumerate(rescaled_sample(imagenet_sample, tmp_path / "big", 8))]
    (tmp_path / "root").mkdir()
    for _, rel in files:  # one root for the originals and the rescaled copies
        target = tmp_path / "root" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tmp_path / rel if rel.startswith("big/") else imagenet_sample / rel
        target.symlink_to(source)
    pil, dev = both_paths(tmp_path / "root", files, transform)
    assert [g.file_id for g in dev.good] == [g.file_id for g in pil.good] == [i for i, _ in files]
    assert [(g.width, g.height, g.mode) for g in dev.good] == [(g.width, g.height, g.mode) for g in pil.good]
    assert {g.mode for g in dev.good} == {"RGB", "L"}
    assert dev.pixels.dtype == torch.float32 and dev.pixels.shape == pil.pixels.shape == (len(files), 3, 224, 224)
    diff = (levels(dev.pixels, transform) - levels(pil.pixels, transform)).abs()
    assert diff.max() <= MAX_LEVELS + 1e-3
    assert 0 < (diff > 0.5).float().mean() < 0.2  # the resize differs a little, not everywhere
    gray = [b for b, g in enumerate(dev.good) if g.mode == "L"]
    assert torch.equal(dev.pixels[gray], pil.pixels[gray])  # grayscale goes through PIL: exact


def test_odd_files_fall_back_to_pil_or_are_skipped_with_its_reasons(tmp_path, imagenet_sample):
    with Image.open(imagenet_sample / of_mode(imagenet_sample, "RGB", 1)[0].path) as opened:
        photo = opened.convert("RGB")
    root = tmp_path / "images"
    (root / "n0").mkdir(parents=True)
    photo.save(root / "n0" / "a_rgb.jpg")
    photo.save(root / "n0" / "b.png")
    photo.convert("CMYK").save(root / "n0" / "c_cmyk.jpg")
    photo.convert("L").save(root / "n0" / "d_gray.jpg")
    photo.convert("P").save(root / "n0" / "e.gif")
    (root / "n0" / "f_truncated.jpg").write_bytes((root / "n0" / "a_rgb.jpg").read_bytes()[:2000])
    (root / "n0" / "g_text.jpg").write_text("not a picture")
    (root / "n0" / "h_empty.jpg").touch()
    (root / "n0" / "i_folder.jpg").mkdir()
    photo.save(root / "n0" / "j_rgb.jpg", progressive=True)
    files = [(i, f"n0/{name}") for i, name in enumerate(sorted(p.name for p in (root / "n0").iterdir()))]
    files.append((len(files), "n0/k_gone.jpg"))
    pil, dev = both_paths(root, files, CaffeTransform(), batch_size=4)
    assert [(g.file_id, g.width, g.height, g.mode) for g in dev.good] == [
        (g.file_id, g.width, g.height, g.mode) for g in pil.good
    ]  # fmt: skip
    assert [(b.file_id, b.reason) for b in dev.bad] == [(b.file_id, b.reason) for b in pil.bad]
    reasons = {files[b.file_id][1]: b.reason for b in dev.bad}
    assert reasons["n0/f_truncated.jpg"].startswith("truncated image: ")  # decode_jpeg refused it: PIL's verdict
    assert set(reasons) == {"n0/f_truncated.jpg", "n0/g_text.jpg", "n0/h_empty.jpg", "n0/i_folder.jpg", "n0/k_gone.jpg"}
    modes = {files[g.file_id][1]: g.mode for g in dev.good}
    assert modes == {"n0/a_rgb.jpg": "RGB", "n0/b.png": "RGB", "n0/c_cmyk.jpg": "CMYK", "n0/d_gray.jpg": "L",
                     "n0/e.gif": "P", "n0/j_rgb.jpg": "RGB"}  # fmt: skip
    exact = [b for b, g in enumerate(dev.good) if not files[g.file_id][1].endswith("rgb.jpg")]
    assert torch.equal(dev.pixels[exact], pil.pixels[exact])  # the PIL path for every non-RGB-JPEG
    assert (dev.pixels - pil.pixels).abs().max() <= MAX_LEVELS + 1e-3


def test_decode_setting_flag_and_variable(monkeypatch):
    from unitscope.flags import from_flags
    from worker import cli

    monkeypatch.delenv("UNITSCOPE_DECODE", raising=False)
    assert from_flags(WorkerSettings, cli.build_parser().parse_args(["run"])).decode == "pil"
    monkeypatch.setenv("UNITSCOPE_DECODE", "gpu")
    assert from_flags(WorkerSettings, cli.build_parser().parse_args(["run"])).decode == "gpu"
    assert from_flags(WorkerSettings, cli.build_parser().parse_args(["run", "--decode", "pil"])).decode == "pil"


def _run(db: Path, images: Path, weights: Path, decode: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNITSCOPE_")}
    cmd = [sys.executable, "-m", "worker", "run", "--images", str(images), "--db", str(db), "--weights", str(weights),
           "--layers", "mixed3a", "--limit", "48", "--device", "cpu", "--decode", decode]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_gpu_decode_run_is_its_own_run_and_publishes_figures_close_to_pil(tmp_path, imagenet_sample, bvlc_weights):
    db = tmp_path / "u.duckdb"
    for decode in ("pil", "gpu"):
        done = _run(db, imagenet_sample, bvlc_weights, decode)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "already has this configuration" not in done.stderr  # gpu is not the pil run's configuration
    with duckdb.connect(str(db), read_only=True) as con:
        runs = con.execute("SELECT run_id, config_hash, preprocessing FROM runs ORDER BY run_id").fetchall()
        assert len(runs) == 2 and runs[0][1] != runs[1][1]
        assert "decode" not in json.loads(runs[0][2]) and json.loads(runs[1][2])["decode"]["path"] == "gpu"
        images = con.execute("SELECT run_id, count(*), count(DISTINCT mode) FROM images GROUP BY 1 ORDER BY 1")
        assert [row[1] for row in images.fetchall()] == [48, 48]
        stats = con.execute("SELECT run_id, count(*) FROM image_stats GROUP BY 1 ORDER BY 1").fetchall()
        assert [n for _, n in stats] == [48, 48]
        si = con.execute("SELECT run_id, si FROM unit_si WHERE layer = 'mixed3a' AND category = 'dog' "
                         "AND stat = 'max' ORDER BY run_id, unit").fetchall()  # fmt: skip
        a = np.array([s for r, s in si if r == 1], dtype=float)
        b = np.array([s for r, s in si if r == 2], dtype=float)
        assert len(a) == len(b) == 256
        assert np.nanmax(np.abs(a - b)) < 0.01 and np.corrcoef(a, b)[0, 1] > 0.999
        ranks = con.execute(
            "SELECT run_id, unit, stat, side, list(image_id ORDER BY rank) FROM unit_ranks "
            "WHERE layer = 'mixed3a' AND rank <= 10 GROUP BY ALL ORDER BY 2, 3, 4, 1"
        ).fetchall()
    # The same top and bottom images for almost every unit, stat and side.
    same = [ranks[i][4] == ranks[i + 1][4] for i in range(0, len(ranks), 2)]
    assert np.mean(same) > 0.9
