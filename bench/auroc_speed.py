"""AUROC over a layer: unitscope.stats.auroc_by_category (scipy's rankdata) against the hand-written midranks
it replaced (one unstable argsort per block, ties found by run boundaries), on the same random matrix.

    .venv/bin/python bench/auroc_speed.py [--images 286000] [--units 32] [--categories 6] [--repeats 3]

Prints each one's best time, the ratio, and the largest difference between their AUROCs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from unitscope import stats


def midrank_auroc(values: np.ndarray, labels: list[np.ndarray]) -> np.ndarray:
    """The baseline: midranks from one argsort per column block, every category's rank sum in sorted order."""
    n, u = values.shape
    out = np.full((len(labels), u), np.nan)
    idx = np.arange(n)[:, None]
    order = np.argsort(values, axis=0)
    ranked = np.take_along_axis(values, order, axis=0)
    differs = ranked[1:] != ranked[:-1]
    edge = np.ones_like(differs[:1])
    first = np.maximum.accumulate(np.where(np.vstack([edge, differs]), idx, 0), axis=0)
    last = np.minimum.accumulate(np.where(np.vstack([differs, edge]), idx, n - 1)[::-1], axis=0)[::-1]
    midrank = (first + last) / 2 + 1
    for row, mask in enumerate(labels):
        n_c = int(mask.sum())
        out[row] = ((midrank * mask[order]).sum(axis=0) - n_c * (n_c + 1) / 2) / (n_c * (n - n_c))
    return out


def _best(f, *args, repeats: int) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = f(*args)
        times.append(time.perf_counter() - t)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=286_000)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--categories", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args()
    rng = np.random.default_rng(0)
    values = rng.normal(size=(a.images, a.units)).astype(np.float32)
    values[:, : a.units // 8] = np.round(values[:, : a.units // 8])  # some columns full of ties
    labels = [rng.random(a.images) < share for share in np.linspace(0.01, 0.5, a.categories)]
    base_t, base = _best(midrank_auroc, values, labels, repeats=a.repeats)
    new_t, new = _best(stats.auroc_by_category, values, labels, repeats=a.repeats)
    print(f"{a.images:,} images x {a.units} units, {a.categories} categories, best of {a.repeats}")
    print(f"hand midranks (baseline): {base_t:.2f} s")
    print(f"stats.auroc_by_category (scipy rankdata): {new_t:.2f} s   ratio {base_t / new_t:.2f}x")
    print(f"largest |difference|: {np.nanmax(np.abs(base - new)):.1e}")


if __name__ == "__main__":
    main()
