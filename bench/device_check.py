"""Numeric checks of a device against the CPU, and of --decode gpu against --decode pil (bench/gpu_check.sh).

1. device: the PIL path's per-unit statistics on --device equal those on the CPU, same images:
   max |cpu - device| / max |cpu| per layer and stat <= DEVICE_TOLERANCE (fp32, TF32 off). Skipped
   when --device is the CPU.
2. decode pixels: the crops of --decode gpu on --device against --decode pil, in 8-bit levels:
   mean |delta| <= DECODE_MEAN_LEVELS (the bound torchvision's own tests hold nvJPEG to against
   libjpeg-turbo); the max and the share of values that differ are printed.
3. decode statistics: the per-unit statistics of the two decode paths on --device, their relative
   difference, and the dog SI (on max, over these images) of every unit: max |delta SI| <= DECODE_SI.

    PYTHONPATH=. .venv/bin/python bench/device_check.py --device cuda --images ../shared/data/imagenet-sample \\
        --weights ../shared/models/bvlc_googlenet --limit 512

Exit code: 0 every check passed; 1 a check failed; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from worker.categories import load_categories
from worker.extract import Extractor, resolve_device
from worker.images import (
    FileEntry,
    build_loader,
    list_image_files,
    listing_problem,
    spread_subset,
)
from worker.models import LoadedModel, get_model
from worker.settings import WorkerSettings

DEVICE_TOLERANCE = 1e-4  # as bench/worker_throughput.py's TOLERANCE
DECODE_MEAN_LEVELS = 2.0
DECODE_SI = 0.02

Stats = dict[str, Tensor]  # layer -> float32 [images, units, 3] (mean, max, min), file order


def run_path(model: LoadedModel, layers: Sequence[str], root: Path, files: Sequence[FileEntry],
             settings: WorkerSettings, device: torch.device) -> tuple[Stats, Tensor, list[int]]:  # fmt: skip
    """One decode path on one device: the statistics, the crops as RGB levels (uint8, CPU), the file ids."""
    decodable = [(i, e.path) for i, e in enumerate(files) if listing_problem(e) is None]
    parts: dict[str, list[Tensor]] = {}
    crops: list[Tensor] = []
    ids: list[int] = []
    with Extractor(model, layers, device) as extractor:
        for batch in build_loader(root, decodable, model.transform, settings, device.type):
            if batch.pixels is None:
                continue
            pixels = batch.pixels.to(device)
            for layer, stats in extractor(pixels).items():
                parts.setdefault(layer, []).append(stats)
            crops.append(model.to_rgb255(pixels).clamp(0, 255).to(torch.uint8).cpu())
            ids += [item.file_id for item in batch.good]
    return {layer: torch.cat(p) for layer, p in parts.items()}, torch.cat(crops), ids


def relative(a: Stats, b: Stats) -> dict[str, list[float]]:
    """Per layer: [per stat] max |a - b| / max |a| over images and units."""
    out = {}
    for layer, x in a.items():
        x64, y64 = x.double(), b[layer].double()
        out[layer] = ((x64 - y64).abs().amax((0, 1)) / x64.abs().amax((0, 1)).clamp_min(1e-30)).tolist()
    return out


def si(responses: np.ndarray, is_cat: np.ndarray) -> np.ndarray:
    """[images, units] -> SI per unit, as unitscope.metrics_sql: min-max normalised, category mean share."""
    lo, hi = responses.min(0), responses.max(0)
    scaled = (responses - lo) / np.where(hi > lo, hi - lo, np.nan)
    cat, rest = scaled[is_cat].mean(0), scaled[~is_cat].mean(0)
    return cat / (cat + rest)


def check(name: str, ok: bool, detail: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    return ok


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=os.environ.get("UNITSCOPE_IMAGES"))
    parser.add_argument("--weights", default=os.environ.get("UNITSCOPE_WEIGHTS"))
    parser.add_argument("--model", default="bvlc-googlenet")
    parser.add_argument("--layers", nargs="+", default=[], help="default: all layers of the model")
    parser.add_argument("--limit", type=int, default=512, help="images, spread over the folder (default 512)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, help="default: the worker's for the device")
    parser.add_argument("--workers", type=int, help="loader processes (default: the worker's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.images is None or args.weights is None:
        print("error: --images and --weights are required (or UNITSCOPE_IMAGES, UNITSCOPE_WEIGHTS)", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    root = args.images.expanduser().resolve()
    files = spread_subset(list_image_files(root), args.limit)
    settings = WorkerSettings(images=root, model=args.model, weights=args.weights, device=device.type,
                              batch_size=args.batch_size, workers=args.workers)  # fmt: skip
    model = get_model(args.model, weights=args.weights)
    layers = model.select_layers(args.layers)
    print(f"{len(files)} images of {root}; {model.name}, layers {', '.join(layers)}; device {device}", flush=True)
    ok = True
    pil, pil_crops, ids = run_path(model, layers, root, files, settings, device)
    if device.type != "cpu":
        cpu_model = get_model(args.model, weights=args.weights)
        cpu, _, cpu_ids = run_path(cpu_model, layers, root, files, settings, torch.device("cpu"))
        worst = max(max(v) for v in relative(cpu, pil).values())
        ok &= check("device", cpu_ids == ids and worst <= DEVICE_TOLERANCE,
                    f"pil path, cpu vs {device}: max relative difference {worst:.1e} "
                    f"(tolerance {DEVICE_TOLERANCE:.0e})")  # fmt: skip
    gpu_settings = settings.model_copy(update={"decode": "gpu"})
    gpu, gpu_crops, gpu_ids = run_path(model, layers, root, files, gpu_settings, device)
    if not check("decode files", gpu_ids == ids, f"{len(gpu_ids)} images decoded by gpu, {len(ids)} by pil"):
        return 1
    levels = (gpu_crops.int() - pil_crops.int()).abs()
    per_image = levels.flatten(1).amax(1)
    ok &= check("decode pixels", levels.float().mean().item() <= DECODE_MEAN_LEVELS,
                f"mean |delta| {levels.float().mean().item():.1e} levels (tolerance {DECODE_MEAN_LEVELS}), max "
                f"{levels.max().item()}, {(levels > 0).float().mean().item():.3%} of values and "
                f"{int((per_image > 0).sum())} of {len(ids)} images differ")  # fmt: skip
    for layer, rel in relative(pil, gpu).items():
        print(f"  {layer:<9} stats, gpu vs pil decode: max relative difference mean {rel[0]:.1e}, max {rel[1]:.1e}, "
              f"min {rel[2]:.1e}")  # fmt: skip
    dog = set(next(c for c in load_categories(()) if c.name == "dog").wnids)
    is_dog = np.array([files[i].wnid in dog for i in ids])
    worst_si = 0.0
    for layer in layers:
        a, b = si(pil[layer][:, :, 1].double().numpy(), is_dog), si(gpu[layer][:, :, 1].double().numpy(), is_dog)
        worst_si = max(worst_si, float(np.nanmax(np.abs(a - b))))
    ok &= check("decode SI", worst_si <= DECODE_SI,
                f"dog SI on max over these {len(ids)} images ({int(is_dog.sum())} dogs): max |delta| "
                f"{worst_si:.4f} over {len(layers)} layers (tolerance {DECODE_SI})")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
