"""What the interventions cost on this device: feature visualisation (seconds per unit and direction) and ablation
(seconds per ablated group), each beside the plain network on the same work in the same run.

  python bench/intervention_cost.py --weights ../shared/models/bvlc_googlenet --images ../shared/data/imagenet-sample

Feature visualisation: --units units of --layer optimised together, both directions, --per-direction images each,
--steps steps at --size px (the job's recipe, worker.feature_vis); its baseline is a forward pass to the layer over
the same images and steps (an optimisation step is a forward and a backward pass, about 3x). Ablation: --groups
groups ablated on --limit images (worker.ablation: the early part once per batch, the late part per group); its
baseline is the whole network once over the same images. Both extrapolate to every unit of the layer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from worker.ablation import Ablator
from worker.extract import resolve_device
from worker.feature_vis import LayerProbe, Target, optimise
from worker.images import ImageDataset, list_image_files, make_loader, spread_subset
from worker.models import get_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--layer", default="mixed4c")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--units", type=int, default=None, help="units visualised (default 4 on a CPU, 64 on a GPU)")
    parser.add_argument("--steps", type=int, default=None, help="default 64 on a CPU, 512 on a GPU")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--per-direction", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="ablation images (default 256 on a CPU, 6308 on a GPU)")
    parser.add_argument("--groups", type=int, default=None, help="ablated groups (default 8 on a CPU, 64 on a GPU)")
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    units = args.units or (64 if gpu else 4)
    steps = args.steps or (512 if gpu else 64)
    limit = args.limit or (6308 if gpu else 256)
    n_groups = args.groups or (64 if gpu else 8)
    batch = args.batch_size or (256 if gpu else 16)
    torch.manual_seed(0)
    model = get_model("bvlc-googlenet", weights=args.weights)
    model.net.to(device)
    total_units = model.taps[args.layer].units
    print(f"device {device}, {torch.get_num_threads()} threads; {args.layer} has {total_units} units")

    # ---- feature visualisation against forward passes over the same image-steps
    targets = [Target(u, sign, 2 * u + (sign > 0)) for u in range(units) for sign in (-1, 1)
               for _ in range(args.per_direction)]
    _sync(device)
    started = time.perf_counter()
    optimise(model, args.layer, targets, steps=steps, size=args.size, seed=0, device=device)
    _sync(device)
    vis = time.perf_counter() - started
    probe = LayerProbe(model, args.layer)
    x = torch.rand(len(targets), 3, args.size, args.size, device=device) * 255
    with torch.no_grad():
        probe(model.from_rgb255(x))
        _sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            probe(model.from_rgb255(x))
        _sync(device)
    probe.close()
    forward = time.perf_counter() - started
    per = vis / (units * 2)
    print(f"visualize: {units} units x 2 directions x {args.per_direction} images, {steps} steps at {args.size} px: "
          f"{vis:.1f} s, {per:.2f} s per unit and direction ({per * 512 / steps:.2f} s at 512 steps); "
          f"forward passes alone {forward:.1f} s: {vis / forward:.2f}x; all {total_units} units both directions at "
          f"512 steps: {per * 512 / steps * 2 * total_units / 60:.1f} min")

    # ---- ablation against the whole network over the same images
    files = spread_subset(list_image_files(Path(args.images)), limit)
    loader = make_loader(ImageDataset(Path(args.images), [(i, e.path) for i, e in enumerate(files)], model.transform),
                         batch_size=batch, workers=2, pin_memory=gpu)
    batches = [b.pixels for b in loader if b.pixels is not None]
    groups = [tuple(range(i * 11 % total_units, i * 11 % total_units + 11)) for i in range(n_groups)]
    with Ablator(model, args.layer, device) as ablator, torch.no_grad():
        _sync(device)
        started = time.perf_counter()
        for pixels in batches:
            ablator.logits(ablator.early(pixels.to(device)), [None, *groups])
        _sync(device)
        ablation = time.perf_counter() - started
        started = time.perf_counter()
        for pixels in batches:
            ablator.logits(ablator.early(pixels.to(device)), [None])
        _sync(device)
        whole = time.perf_counter() - started
    images = sum(len(b) for b in batches)
    per_group = (ablation - whole) / n_groups
    print(f"ablate: {n_groups} groups on {images} images: {ablation:.1f} s, {per_group:.2f} s per group "
          f"({per_group / images * 1000:.2f} ms per image); the whole network once {whole:.1f} s: a group costs "
          f"{per_group / whole:.2f}x a forward pass; every unit alone on {images} images: "
          f"{per_group * total_units / 60:.1f} min")


if __name__ == "__main__":
    main()
