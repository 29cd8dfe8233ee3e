"""Write a synthetic DB at the study's scale through the worker's own storage code.

The study ran on about 286,000 images: ImageNet's 120 dog classes plus 100 other classes. This
script stores that many synthetic images, with all 12 layers (5,808 units), through exactly the
calls `python -m worker run` makes: `WorkerStore.open`, `begin`, one `write_batch` per batch, and
`publish` (sort by layer/unit/image, SI for every stat and category, default in_top/in_bottom).
No image files are written: the `images` rows carry paths, and the server's image route answers
404 for them, which the speed benches do not touch.

The responses are float32 with the shapes of real pre-ReLU statistics, drawn per unit:
- drive d = exp(skew * z) - 1 with z ~ N(0, 1): a right-skewed response, as a unit's peak is;
- mean = mu + sigma * d; max = mean + sigma * spread * exp(0.3 e1); min = mean - sigma * spread * exp(0.3 e2);
- selective units multiply the category images' exp(skew * z) by a gain (1.5-6), so their SI on
  max is about gain / (1 + gain); a few are suppressed by the category instead (gain < 1);
- two-sided units flip a share of the category images to strongly negative drives, so category
  images crowd both their top and their bottom k (the study's claim).
The share of selective and two-sided units grows with depth. Everything is seeded per batch, so
an interrupted build resumes (same command) with identical values.

    .venv/bin/python bench/make_scale_db.py --db /tmp/unitscope-scale/scale.duckdb
    .venv/bin/python bench/make_scale_db.py --images 20000 --db /tmp/h6/scale20k.duckdb --layers mixed4c
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worker.categories import (
    BUILTIN_SYNSETS,
    Category,
    builtin_category,
    load_imagenet_classes,
)
from worker.models import GOOGLENET_LAYERS
from worker.run_rows import ImageRow, LayerSpec, RunSpec
from worker.store import StoreError, WorkerStore

STUDY_IMAGES = 286_000
CATEGORY = "dog"
# The built-in dog list has ImageNet's 118 dog classes (indices 151-268); the study's "120 dog
# breeds" matches Stanford Dogs, which also has these two wild dogs.
EXTRA_DOG_WNIDS = ("n02115641", "n02115913")  # dingo, dhole
OTHER_CLASSES = 100
CANIDS = range(151, 281)  # dogs, wolves, foxes...: kept out of the "other" classes
IMAGE_SIZES = ((500, 375), (500, 333), (375, 500), (500, 500), (640, 480), (333, 500))


@dataclass(frozen=True)
class UnitParams:
    """Per-unit parameters of one layer's synthetic responses (arrays of length units)."""

    mu: np.ndarray
    sigma: np.ndarray
    spread: np.ndarray
    skew: np.ndarray
    gain: np.ndarray  # multiplies the category images' drive; 1 for units without preference
    flip: np.ndarray  # share of category images turned strongly negative (two-sided units)


def unit_params(layer: str, seed: int) -> UnitParams:
    """Draw a layer's unit parameters; deeper layers have more selective and two-sided units."""
    units = GOOGLENET_LAYERS[layer]
    position = list(GOOGLENET_LAYERS).index(layer)
    depth = position / (len(GOOGLENET_LAYERS) - 1)  # 0 for conv1, 1 for mixed5b
    rng = np.random.default_rng([seed, 1_000_003, position])
    scale = 30.0 / (1 + 2 * depth)  # early layers respond in tens, deep ones in units
    mu = rng.normal(-0.3 * scale, 0.5 * scale, units)
    sigma = scale * rng.lognormal(-1.0, 0.4, units)
    spread = rng.uniform(0.3, 2.0, units)
    skew = rng.uniform(0.35, 0.8, units)
    gain = np.ones(units)
    flip = np.zeros(units)
    kind = rng.random(units)
    selective = kind < 0.04 + 0.30 * depth
    suppressed = (kind >= 0.04 + 0.30 * depth) & (kind < 0.07 + 0.35 * depth)
    two_sided = rng.random(units) < 0.03 + 0.20 * depth
    gain[selective] = rng.uniform(1.5, 6.0, selective.sum())
    gain[suppressed] = rng.uniform(0.3, 0.8, suppressed.sum())
    flip[two_sided] = rng.uniform(0.1, 0.4, two_sided.sum())
    f32 = np.float32
    return UnitParams(mu.astype(f32), sigma.astype(f32), spread.astype(f32), skew.astype(f32),
                      gain.astype(f32), flip.astype(f32))  # fmt: skip


def layer_responses(rng: np.random.Generator, p: UnitParams, is_cat: np.ndarray) -> np.ndarray:
    """float32 [images, units, 3] (mean, max, min) for one batch, as write_batch takes them."""
    n, units = len(is_cat), len(p.mu)
    z = rng.standard_normal((n, units), dtype=np.float32)
    base = np.exp(z * p.skew)
    cat = is_cat[:, None]
    base = np.where(cat, base * p.gain, base)
    flipped = cat & (rng.random((n, units), dtype=np.float32) < p.flip)
    drive = np.where(flipped, -1.0 - p.gain * base, base - 1.0)
    out = np.empty((n, units, 3), dtype=np.float32)
    out[:, :, 0] = p.mu + p.sigma * drive
    width = p.sigma * p.spread
    out[:, :, 1] = out[:, :, 0] + width * np.exp(0.3 * rng.standard_normal((n, units), dtype=np.float32))
    out[:, :, 2] = out[:, :, 0] - width * np.exp(0.3 * rng.standard_normal((n, units), dtype=np.float32))
    return out


@dataclass(frozen=True)
class Dataset:
    """The synthetic image list: sorted paths as the worker lists an ImageFolder, with their classes."""

    files: tuple[str, ...]
    wnids: np.ndarray  # object array, per image id
    class_index: np.ndarray  # int, per image id
    is_cat: np.ndarray  # bool, per image id
    category: Category
    names: dict[str, str]


def make_dataset(images: int, share: float) -> Dataset:
    """`images` files over 120 dog and 100 other real ImageNet classes, `share` of them dogs."""
    classes = load_imagenet_classes()
    by_index = sorted(classes.values(), key=lambda c: c.index)
    dog = builtin_category(CATEGORY)
    dogs = sorted(set(dog.wnids) | set(EXTRA_DOG_WNIDS))
    others_pool = [c.wnid for c in by_index if c.index not in CANIDS]
    step = len(others_pool) / OTHER_CLASSES
    others = [others_pool[int(i * step)] for i in range(OTHER_CLASSES)]
    n_cat = round(images * share)
    counts: dict[str, int] = {}
    for group, n in ((dogs, n_cat), (others, images - n_cat)):
        for i, wnid in enumerate(group):
            counts[wnid] = n // len(group) + (1 if i < n % len(group) else 0)
    files: list[str] = []
    wnids: list[str] = []
    for wnid in sorted(counts):  # ImageFolder order: folders sorted, files sorted inside
        for j in range(counts[wnid]):
            files.append(f"{wnid}/{wnid}_{j:06d}.JPEG")
            wnids.append(wnid)
    wnid_arr = np.array(wnids, dtype=object)
    category = Category(CATEGORY, tuple(dogs), "bench/make_scale_db.py: built-in dog + dingo, dhole")
    dog_set = set(dogs)
    return Dataset(
        files=tuple(files),
        wnids=wnid_arr,
        class_index=np.array([classes[w].index for w in wnids], dtype=np.int64),
        is_cat=np.array([w in dog_set for w in wnids], dtype=bool),
        category=category,
        names={w: classes[w].name for w in counts},
    )


def layer_specs(layers: Sequence[str]) -> tuple[LayerSpec, ...]:
    """Layer, module and branch names of the BVLC GoogLeNet (randomly initialised: no weights needed)."""
    from worker.models import get_model  # imports torch; only the layer layout is used

    model = get_model("bvlc-googlenet", weights=None)
    return tuple(
        LayerSpec(
            name=layer, position=list(model.taps).index(layer), units=model.taps[layer].units,
            module=model.module_name(layer), branches=tuple(model.unit_branches(layer)),
        )
        for layer in layers
    )


class RawArrays:
    """The write phase's physical limit on this disk: each batch's arrays appended raw, one file per layer."""

    def __init__(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.folder, self.sizes = folder, {}

    def append(self, responses: dict[str, np.ndarray]) -> None:
        for layer, values in responses.items():
            fd = os.open(self.folder / layer, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                data = memoryview(np.ascontiguousarray(values, dtype=np.float32)).cast("B")
                os.pwrite(fd, data, self.sizes.get(layer, 0))
                os.fdatasync(fd)
            finally:
                os.close(fd)
            self.sizes[layer] = self.sizes.get(layer, 0) + len(data)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _staged_bytes(store: WorkerStore) -> int:
    """The working file, its WAL and the staged arrays (if this version of the store has them)."""
    staged = store.db.with_name(store.db.name + ".staged")
    files = [store.partial, store.partial_wal, *(staged.rglob("*.f32") if staged.exists() else ())]
    return sum(f.stat().st_size for f in files if f.exists())


def _peak_rss_gib() -> float:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=STUDY_IMAGES, help="images (default: the study's 286,000)")
    parser.add_argument("--db", type=Path, default=Path("/tmp/unitscope-scale/scale.duckdb"), help="DB to write")
    parser.add_argument("--layers", nargs="+", default=list(GOOGLENET_LAYERS), choices=list(GOOGLENET_LAYERS),
                        metavar="LAYER", help="layers to store (default: all 12)")
    parser.add_argument("--batch", type=int, default=1000, help="images per write_batch transaction")
    parser.add_argument("--share", type=float, default=0.55, help="share of images in the dog category")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--all-categories", action="store_true",
                        help="record the other built-in categories beside dog, as a real run does (6 in all; "
                        "default: dog alone, as the figures before 2026-12-04 night)")
    parser.add_argument("--memory-limit", default="6GB",
                        help="DuckDB memory_limit for the store's connections (default 6GB; 'none': DuckDB's default)")
    parser.add_argument("--force", action="store_true", help="delete an existing DB at --db first")
    parser.add_argument("--write-only", action="store_true",
                        help="stop before publishing; the same command without it then resumes and publishes, "
                        "so the two phases can be timed apart")
    args = parser.parse_args(argv)
    if args.images < 2 or args.batch < 1 or not 0 < args.share < 1:
        parser.error("need --images >= 2, --batch >= 1 and 0 < --share < 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Build the DB and print build times, size and bytes per stored value."""
    args = parse_args(argv)
    layers = [layer for layer in GOOGLENET_LAYERS if layer in args.layers]
    units = sum(GOOGLENET_LAYERS[layer] for layer in layers)
    rows = args.images * units
    db = args.db.resolve()
    if db.exists():
        if not args.force:
            print(f"{db} exists; pass --force to replace it", file=sys.stderr)
            return 2
        db.unlink()
    db.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(db.parent).free
    # The staged arrays (4 bytes a value), the raw baseline's copy (4) and the published copy (about 4).
    need = rows * 3 * 12
    print(f"{args.images:,} images x {units:,} units ({len(layers)} layers) = {rows:,} response rows; "
          f"free disk at {db.parent}: {_gib(free)}, rough need {_gib(need)}")  # fmt: skip
    if free < need:
        print("warning: probably not enough disk space", file=sys.stderr)

    t0 = time.perf_counter()
    data = make_dataset(args.images, args.share)
    specs = layer_specs(layers)
    params = {layer: unit_params(layer, args.seed) for layer in layers}
    spec = RunSpec(
        model="synthetic",
        weights=f"none: synthetic responses (bench/make_scale_db.py, seed {args.seed})",
        weights_sha256="none",
        preprocessing=json.dumps({"synthetic": True, "seed": args.seed}, sort_keys=True),
        images_root=str(db.parent / "synthetic-images"),  # does not exist: no image files are written
        files=data.files,
        layers=specs,
        categories=(data.category, *(builtin_category(name) for name in BUILTIN_SYNSETS
                                     if args.all_categories and name != CATEGORY)),
        device="cpu",
    )
    print(f"dataset: {int(data.is_cat.sum()):,} {CATEGORY} images ({data.is_cat.mean():.1%}) in "
          f"{len(data.category.wnids)} classes, {int((~data.is_cat).sum()):,} others in {OTHER_CLASSES} classes "
          f"(set up in {time.perf_counter() - t0:.1f} s)")  # fmt: skip

    sizes = np.array(IMAGE_SIZES)
    try:
        limit = None if args.memory_limit.lower() == "none" else args.memory_limit
        with WorkerStore.open(db, memory_limit=limit) as store:
            progress = store.begin(spec)
            if progress.resumed:
                print(f"resuming: {len(progress.done):,} images already stored in {store.partial}")
            t_write = time.perf_counter()
            n_batches = (args.images + args.batch - 1) // args.batch
            written = 0
            store_s = raw_s = 0.0  # write_batch alone, and the same arrays written raw (the disk's limit)
            raw = RawArrays(db.with_name(db.name + ".raw-limit"))
            next_report = 0.0
            for b in range(n_batches):
                lo, hi = b * args.batch, min(args.images, (b + 1) * args.batch)
                if lo in progress.done:
                    continue  # a batch is one transaction: stored whole or not at all
                rng = np.random.default_rng([args.seed, b])
                ids = np.arange(lo, hi)
                is_cat = data.is_cat[lo:hi]
                dims = sizes[rng.integers(0, len(sizes), hi - lo)]
                images = [
                    ImageRow(int(i), data.files[i], data.wnids[i], int(data.class_index[i]),
                             data.names[data.wnids[i]], int(w), int(h), "RGB")
                    for i, (w, h) in zip(ids, dims)
                ]  # fmt: skip
                responses = {layer: layer_responses(rng, params[layer], is_cat) for layer in layers}
                # The two alternate which goes first, so neither always finds the page cache the other filled.
                for stored in ((True, False) if b % 2 else (False, True)):
                    t = time.perf_counter()
                    if stored:
                        store.write_batch(images, (), responses)
                        store_s += time.perf_counter() - t
                    else:
                        raw.append(responses)
                        raw_s += time.perf_counter() - t
                written += hi - lo
                elapsed = time.perf_counter() - t_write
                if elapsed >= next_report or hi == args.images:
                    done = hi / args.images
                    rate = written / store_s if store_s else 0.0
                    eta = (args.images - hi) * (elapsed / written)
                    print(f"  write {hi:>9,}/{args.images:,} ({done:5.1%})  {rate:8,.0f} images/s "
                          f"{rate * units / 1e6:6.1f} M rows/s  working files {_gib(_staged_bytes(store))}  "
                          f"ETA {eta / 60:5.1f} min", flush=True)  # fmt: skip
                    next_report = elapsed + 30
            raw.remove()
            write_s = time.perf_counter() - t_write
            staging_bytes = _staged_bytes(store)
            if written:
                store_rate, raw_rate = written / store_s, written / raw_s
                print(f"write phase: write_batch {store_rate:,.0f} images/s ({store_rate * units / 1e6:.1f} M unit-rows/s); "
                      f"the same arrays written raw (os.pwrite + fdatasync, one file per layer) {raw_rate:,.0f} "
                      f"images/s; ratio {store_rate / raw_rate:.2f}; load average {os.getloadavg()[0]:.2f}")
            if args.write_only:
                print(f"write phase {write_s:,.1f} s with the synthetic data's generation; stopped before publishing "
                      f"(--write-only); peak RSS {_peak_rss_gib():.2f} GiB")
                return 0
            print("publishing (sort by layer/unit/image, SI, ranks)…", flush=True)
            t_pub = time.perf_counter()
            published = store.publish()
            publish_s = time.perf_counter() - t_pub
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    values = published.responses * 3
    print()
    print(f"DB                 {db}")
    print(f"images             {published.images:,} ({len(layers)} layers, {units:,} units)")
    print(f"response rows      {published.responses:,}  ({values:,} stored values)")
    print(f"write phase        {store_s:,.1f} s in write_batch  ({written / store_s if store_s else 0:,.0f} images/s, "
          f"{written * units / store_s / 1e6 if store_s else 0:.1f} M rows/s; working files {_gib(staging_bytes)}); "
          f"{write_s:,.1f} s with generation and the raw baseline")
    print(f"publish phase      {publish_s:,.1f} s  (sort, SI for 3 stats, ranks)")
    print(f"total build        {write_s + publish_s:,.1f} s")
    print(f"DB size            {_gib(published.db_bytes)} ({published.db_bytes:,} bytes)")
    print(f"bytes per value    {published.bytes_per_value:.3f}  (DB size / stored response values)")
    print(f"peak RSS           {_peak_rss_gib():.2f} GiB  (this process: write and publish)")
    print(f"load average       {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
