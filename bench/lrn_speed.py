"""The BVLC GoogLeNet's two LRN layers: worker.models.bvlc.CaffeLRN against torch's LocalResponseNorm, in one run.

Three ways on the same channels_last batch of each LRN's input shape (batch 16 by default, the worker's CPU batch):
- torch: nn.LocalResponseNorm (the baseline: a 5-D avg_pool3d);
- pow: CaffeLRN's window sums with the scale raised by pow, as for any beta other than Caffe's 0.75;
- rsqrt: CaffeLRN as the network runs it (beta = 0.75: rsqrt(s) * sqrt(rsqrt(s))).
Rounds alternate the order; each figure is the median over rounds. The error is the largest relative
difference from torch's LRN in float64 at the same beta, over the batch, of each CaffeLRN path.

    .venv/bin/python bench/lrn_speed.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from worker.models import CaffeLRN

SHAPES = {"pool1/norm1": (64, 56, 56), "conv2/norm2": (192, 56, 56)}  # C, H, W of each LRN's input
BETA = 0.75  # Caffe's
POW_BETA = float(torch.nextafter(torch.tensor(BETA, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)))


def _seconds(fn: Callable[[Tensor], Tensor], x: Tensor) -> float:
    started = time.perf_counter()
    fn(x)
    return time.perf_counter() - started


def _error(lrn: CaffeLRN, x: Tensor) -> float:
    """The largest relative difference of lrn(x) from torch's LRN of x in float64, at lrn's parameters."""
    exact = nn.LocalResponseNorm(lrn.size, alpha=lrn.alpha, beta=lrn.beta, k=lrn.k)(x.double())
    return ((lrn(x).double() - exact).abs() / exact.abs().clamp_min(1e-30)).max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.manual_seed(0)
    ways = {"torch": nn.LocalResponseNorm(5, alpha=1e-4, beta=BETA, k=1.0),
            "pow": CaffeLRN(5, alpha=1e-4, beta=POW_BETA, k=1.0),  # the pow path, beta one float64 ulp away
            "rsqrt": CaffeLRN(5, alpha=1e-4, beta=BETA, k=1.0)}  # fmt: skip
    print(f"{torch.get_num_threads()} threads, batch {args.batch}, {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'LRN':<12} " + " ".join(f"{name + ' ms':>10}" for name in ways) + f" {'torch/rsqrt':>11} {'pow/rsqrt':>9}"
          f" {'pow error':>9} {'rsqrt error':>11}")  # fmt: skip
    with torch.inference_mode():
        for label, shape in SHAPES.items():
            x = (torch.randn(args.batch, *shape) * 40).relu().contiguous(memory_format=torch.channels_last)
            errors = {name: _error(ways[name], x) for name in ("pow", "rsqrt")}
            times: dict[str, list[float]] = {name: [] for name in ways}
            for name, way in ways.items():
                way(x)  # untimed warm-up
            for round_ in range(args.rounds):
                order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
                for name in order:
                    times[name].append(_seconds(ways[name], x))
            ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
            print(f"{label:<12} " + " ".join(f"{ms[name]:>10.2f}" for name in ways)
                  + f" {ms['torch'] / ms['rsqrt']:>10.2f}x {ms['pow'] / ms['rsqrt']:>8.2f}x {errors['pow']:>9.1e}"
                  f" {errors['rsqrt']:>11.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
