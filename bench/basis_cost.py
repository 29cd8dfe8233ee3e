"""What the random-basis control adds to the forward pass: the Extractor with and without bases, in one run.

`python -m worker run --bases N` reduces, beside the units, every direction of N random orthonormal bases of
the --basis-layers (worker.basis): the layer's branches are kept and rotated together, C x C x H x W
multiply-adds per image and basis. This bench times the worker's Extractor on the same batch with --bases 0
(the baseline) and with N on every layer given, rounds alternating which goes first, and prints the median
ratio of the two. The input is random
pixels: the cost does not depend on the values.

    .venv/bin/python bench/basis_cost.py --weights ../shared/models/bvlc_googlenet --layers mixed4c
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence

import torch

from worker.extract import Extractor, resolve_device
from worker.models import get_model


def _time(extractor: Extractor, batch: torch.Tensor, repeats: int) -> float:
    """Seconds per batch, the median of `repeats` calls after one untimed call."""
    extractor(batch)
    times = []
    for _ in range(repeats):
        if extractor.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        extractor(batch)
        if extractor.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="a Caffe weights folder (default: random init)")
    parser.add_argument("--layers", nargs="+", default=["mixed4c"], help="layers (default mixed4c)")
    parser.add_argument("--bases", type=int, default=2, help="random bases per layer (default 2, the worker's)")
    parser.add_argument("--batch", type=int, default=16, help="images per batch (default 16, the worker's on a CPU)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per path and round (default 3)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    model = (get_model("bvlc-googlenet", weights=args.weights) if args.weights
             else get_model("bvlc-googlenet", weights=None, seed=0))
    batch = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    ratios, seconds = [], {0: [], args.bases: []}
    for round_ in range(args.rounds):
        order = (0, args.bases) if round_ % 2 == 0 else (args.bases, 0)
        for bases in order:  # one Extractor's hooks at a time on the shared network
            with Extractor(model, args.layers, device, bases=bases, basis_layers=args.layers) as extractor:
                seconds[bases].append(_time(extractor, batch, args.repeats))
        ratios.append(seconds[args.bases][-1] / seconds[0][-1])
        print(f"round {round_ + 1}: bases 0 {args.batch / seconds[0][-1]:.1f} images/s, bases {args.bases} "
              f"{args.batch / seconds[args.bases][-1]:.1f} images/s, ratio {ratios[-1]:.3f}", flush=True)
    print(f"{', '.join(args.layers)} on {device}, batch {args.batch}: {args.bases} random bases cost "
          f"{statistics.median(ratios) - 1:+.1%} of the forward pass (median of {args.rounds} rounds); "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
