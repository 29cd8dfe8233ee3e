"""Worker throughput: a naive baseline and the product's decode+extract path, side by side in one run.

Prints images/s of both and their ratio for each layer set (default: mixed4c, and all 12 layers),
plus how far the product's stored statistics are from the baseline's on the same images.

- baseline (written here once, never used by the product): torchvision ImageFolder with the model's
  transform, DataLoader(num_workers=0, batch 32), fp32, contiguous memory, the FULL network (up to
  the classifier), forward hooks that clone every branch's whole pre-ReLU map, reduced to
  mean/max/min after the forward pass.
- product: what `python -m worker run` does between listing the files and writing DuckDB, through
  the worker's own code (worker.images.build_loader, worker.extract.Extractor): decoding
  in loader processes while the network runs, the worker's batch size, channels_last, only the
  stages up to the deepest requested layer, maps reduced inside the hooks.
- --decode pil gpu: the product path once per decode path (worker.device_decode for gpu), side by
  side; only the pil path's statistics are held to TOLERANCE (gpu decode: bench/device_check.py).
- product+stats (optional, --image-stats): the product path plus the low-level statistics of every
  batch (worker.image_stats on LoadedModel.to_rgb255 of the batch), as the worker computes them; its
  images/s beside the product's give the statistics' overhead.
- cli (optional, --cli): `python -m worker run` as its own process on the same subset into a temporary DB, so the
  DuckDB writes, the model load and the publication step are included (wall time of the whole run). Only this
  process has the worker's allocator settings (worker.malloc): the baseline and product passes run in the bench's
  own process with glibc's defaults.

Both timed passes start from a cold loader (worker start-up included) with the files already in the
page cache, after an untimed warm-up pass over --warmup batches. Each of --repeats rounds runs one
pass of each path back to back, alternating which goes first; the speed-up is the median over rounds
of the ratio within a round, which pairs passes that saw similar load. Every round is printed, with
the load average: on a shared machine the figures are only as good as the CPU share they got, and
--wait-idle starts each pass in a quiet spell.

    .venv/bin/python bench/worker_throughput.py --images ../shared/data/imagenet-sample \\
        --weights ../shared/models/bvlc_googlenet --wait-idle 120

Exit code: 0; 1 when the statistics differ beyond TOLERANCE; 2 for bad arguments or inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchvision.datasets import ImageFolder

from worker.cli import EXIT_OK, EXIT_SKIPPED
from worker.extract import Extractor, resolve_device
from worker.image_stats import image_stats
from worker.images import (
    FileEntry,
    build_loader,
    default_workers,
    list_image_files,
    listing_problem,
    spread_subset,
)
from worker.malloc import ENV_VARS
from worker.models import MODEL_NAMES, LoadedModel, get_model
from worker.settings import WorkerSettings

BASELINE_BATCH = 32
TOLERANCE = 1e-4  # max |baseline - product| / max |baseline|, per layer and stat
TARGETS = {"mixed4c": 2.0, "all": 1.5}  # the speed-up targets on the 2-core CPU
STAT_NAMES = ("mean", "max", "min")

Stats = dict[str, Tensor]  # layer -> float32 [images, units, 3] (mean, max, min), file order


@dataclass
class Timing:
    """One timed pass: how many images in how many seconds, and the statistics it computed."""

    images: int
    seconds: float  # wall time
    cpu: float  # CPU seconds of this process and its finished children (the loader workers)
    stats: Stats = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Images per wall-clock second."""
        return self.images / self.seconds

    @property
    def cpu_per_image(self) -> float:
        """CPU seconds per image: less sensitive than images/s to other work on a shared machine."""
        return self.cpu / self.images


class Clock:
    """Wall time and CPU time (user + system, this process and its reaped children) since start."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), self._cpu()

    @staticmethod
    def _cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def timing(self, images: int, stats: Stats | None = None) -> Timing:
        """A Timing for `images` images done since start."""
        return Timing(images, time.perf_counter() - self.wall, self._cpu() - self.cpu, stats or {})


# ------------------------------------------------------------------------------------ baseline


def baseline_pass(model: LoadedModel, root: Path, paths: Sequence[str], layers: Sequence[str],
                  device: torch.device, limit_batches: int | None = None) -> Timing:  # fmt: skip
    """ImageFolder + DataLoader(0 workers, batch 32) + full forward + hooks keeping whole maps."""
    clock = Clock()
    folder = ImageFolder(str(root), transform=model.transform)
    position = {Path(path).relative_to(root).as_posix(): i for i, (path, _) in enumerate(folder.samples)}
    missing = [path for path in paths if path not in position]
    if missing:
        raise SystemExit(f"error: ImageFolder does not list {missing[0]} (and {len(missing) - 1} more)")
    loader = DataLoader(Subset(folder, [position[path] for path in paths]), batch_size=BASELINE_BATCH,
                        num_workers=0)  # fmt: skip
    maps: dict[str, list[Tensor | None]] = {}
    handles = []
    for layer in layers:
        branches = model.taps[layer].branches
        maps[layer] = [None] * len(branches)
        for index, branch in enumerate(branches):

            def keep(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor, layer: str = layer,
                     index: int = index) -> None:  # fmt: skip
                maps[layer][index] = output.clone()  # the in-place ReLU overwrites `output`

            handles.append(model.net.get_submodule(branch.module).register_forward_hook(keep))
    parts: dict[str, list[Tensor]] = {layer: [] for layer in layers}
    images = 0
    # fp32 on a GPU too: recent GPUs would otherwise run fp32 convolutions as TF32 (~1e-3 off).
    precision = (
        torch.backends.cudnn.flags(enabled=True, allow_tf32=False, fp32_precision="ieee")
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    try:
        with torch.no_grad(), precision:
            for number, (pixels, _) in enumerate(loader):
                if limit_batches is not None and number >= limit_batches:
                    break
                model.net(pixels.to(device))  # the whole network, classifier included
                for layer in layers:
                    full = torch.cat(maps[layer], dim=1)  # N x C x H x W
                    flat = full.flatten(2)
                    parts[layer].append(torch.stack((flat.mean(2), flat.amax(2), flat.amin(2)), 2).cpu())
                images += pixels.shape[0]
    finally:
        for handle in handles:
            handle.remove()
    return clock.timing(images, {layer: torch.cat(p) for layer, p in parts.items() if p})


# ------------------------------------------------------------------------------------ product


def product_pass(extractor: Extractor, model: LoadedModel, root: Path, files: Sequence[FileEntry],
                 settings: WorkerSettings, device: torch.device, limit_batches: int | None = None,
                 with_image_stats: bool = False) -> tuple[Timing, list[str]]:  # fmt: skip
    """The worker's own loader (worker.images.build_loader) and extractor, as `python -m worker run` uses
    them, without the DuckDB writes; with_image_stats adds the low-level statistics of each batch, as
    worker.cli._process computes them. Returns the timing and the relative paths of the images it
    decoded (in stats order)."""
    clock = Clock()
    # As worker.cli._process: files known to be bad from the listing are skipped, not decoded.
    decodable = [(i, e.path) for i, e in enumerate(files) if listing_problem(e) is None]
    loader = build_loader(root, decodable, model.transform, settings, device.type)
    parts: dict[str, list[Tensor]] = {layer: [] for layer in extractor.layers}
    good: list[str] = []
    for number, batch in enumerate(loader):
        if limit_batches is not None and number >= limit_batches:
            break
        if batch.pixels is None:
            continue
        pixels = batch.pixels.to(device, non_blocking=True)
        for layer, stats in extractor(pixels).items():
            parts[layer].append(stats)
        if with_image_stats:
            image_stats(model.to_rgb255(pixels)).cpu()
        good += [files[item.file_id].path for item in batch.good]
    return clock.timing(len(good), {layer: torch.cat(p) for layer, p in parts.items() if p}), good


def cli_pass(settings: WorkerSettings, files: int) -> Timing:
    """`python -m worker run` as its own process on the same subset, into a throw-away DB (wall time of the
    whole run: the interpreter and imports, model load, decoding, network, DuckDB writes and publication)."""
    with tempfile.TemporaryDirectory(prefix="unitscope-bench-") as tmp:
        flags = {"--images": settings.images, "--model": settings.model, "--weights": settings.weights,
                 "--device": settings.device, "--decode": settings.decode, "--limit": settings.limit,
                 "--batch-size": settings.batch_size, "--workers": settings.workers,
                 "--db": Path(tmp) / "bench.duckdb"}  # fmt: skip
        command = [sys.executable, "-m", "worker", "run", "--restart", "--layers", *settings.layers]
        command += [str(part) for flag, value in flags.items() if value is not None for part in (flag, value)]
        # Without glibc's threshold variables, which would stop the worker's own process from setting them.
        env = {name: value for name, value in os.environ.items() if name not in ENV_VARS}
        clock = Clock()
        code = subprocess.run(command, env=env, check=False).returncode
        timing = clock.timing(files)
    if code not in (EXIT_OK, EXIT_SKIPPED):
        raise SystemExit(f"error: worker run exited with {code}")
    return timing


def wait_for_idle(limit: float, idle_share: float = 0.8, window: float = 2.0) -> str:
    """Wait up to `limit` seconds until the CPUs were at least `idle_share` idle over `window` seconds.

    On a machine shared with other jobs this starts each pass in a quiet spell; returns a note for the
    progress line ("" when not waiting, or without /proc/stat)."""
    if limit <= 0 or not os.path.exists("/proc/stat"):
        return ""
    started = time.perf_counter()
    while True:
        before = _cpu_ticks()
        time.sleep(window)
        busy, idle = (a - b for a, b in zip(_cpu_ticks(), before))
        waited = time.perf_counter() - started
        if idle >= idle_share * (busy + idle):
            return f", waited {waited:.0f} s for idle CPUs"
        if waited >= limit:
            return f", CPUs still {busy / (busy + idle):.0%} busy after {waited:.0f} s"


def _cpu_ticks() -> tuple[int, int]:
    """(busy, idle) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, idle


# ------------------------------------------------------------------------------------ report


def relative_errors(base: Stats, prod: Stats) -> dict[str, tuple[list[float], list[float]]]:
    """Per layer: ([per stat] max|b-p| / max|b| over all images and units,
    [per stat] worst unit of max_images|b-p| / max_images|b|)."""
    out = {}
    for layer, b in base.items():
        b64, p64 = b.double(), prod[layer].double()
        diff = (b64 - p64).abs()  # images x units x 3
        whole = (diff.amax(dim=(0, 1)) / b64.abs().amax(dim=(0, 1)).clamp_min(1e-30)).tolist()
        per_unit = (diff.amax(0) / b64.abs().amax(0).clamp_min(1e-30)).amax(0).tolist()
        out[layer] = (whole, per_unit)
    return out


def machine_line(device: torch.device) -> str:
    """CPU count, torch threads, device name and the load average (the CPU may be shared)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as info:
                name = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"device {device} ({name}), load average {load}")  # fmt: skip


def parse_layer_set(text: str) -> tuple[str, tuple[str, ...]]:
    """'all' -> () (every layer); 'mixed4c' or 'conv1,mixed4c' -> those names, checked once the model is loaded."""
    return text, () if text == "all" else tuple(text.split(","))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=os.environ.get("UNITSCOPE_IMAGES"),
                        help="ImageFolder root, e.g. ../shared/data/imagenet-sample [UNITSCOPE_IMAGES]")  # fmt: skip
    parser.add_argument("--weights", default=os.environ.get("UNITSCOPE_WEIGHTS"),
                        help="BVLC weights folder, e.g. ../shared/models/bvlc_googlenet [UNITSCOPE_WEIGHTS]")  # fmt: skip
    parser.add_argument("--model", default="bvlc-googlenet", choices=MODEL_NAMES,
                        help="googlenet needs --weights FILE.pth (a local state dict)")  # fmt: skip
    parser.add_argument("--layers", nargs="+", type=parse_layer_set, metavar="SET",
                        default=[parse_layer_set("mixed4c"), parse_layer_set("all")],
                        help="layer sets to bench, each 'all' or comma-separated names (default: mixed4c all)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=256, help="images, spread evenly over the folder (default 256)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--batch-size", type=int, help="product batch size (default: the worker's default)")
    parser.add_argument("--workers", type=int, help="product decoding processes (default: the worker's default)")
    parser.add_argument("--decode", nargs="+", choices=("pil", "gpu"), default=["pil"],
                        help="product decode paths to bench, side by side (default: pil)")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up batches per path (default 1)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of one pass per path, alternating which goes first (default 3)")  # fmt: skip
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each pass, wait up to SECONDS for the CPUs to be 80%% idle (shared machines)")  # fmt: skip
    parser.add_argument("--skip-baseline", action="store_true", help="time the product path only (no ratio)")
    parser.add_argument("--image-stats", action="store_true",
                        help="also time the product path with the low-level image statistics (their overhead)")  # fmt: skip
    parser.add_argument("--cli", action="store_true",
                        help="also time `python -m worker run` (DuckDB writes and publication included)")  # fmt: skip
    return parser


@dataclass
class SetResult:
    """The passes of one layer set, round by round, and the numeric differences."""

    name: str
    decode: str  # the product path's --decode
    layers: list[str]
    baseline: list[Timing]  # empty with --skip-baseline
    product: list[Timing]
    errors: dict[str, tuple[list[float], list[float]]]
    with_stats: list[Timing] = field(default_factory=list)  # product+stats passes (--image-stats)

    @property
    def label(self) -> str:
        """The set's name, with the decode path when it is not PIL."""
        return self.name if self.decode == "pil" else f"{self.name}/{self.decode}"

    def ratios(self) -> list[float]:
        """Product images/s over baseline images/s in each round (the two passes ran back to back)."""
        return [p.rate / b.rate for p, b in zip(self.product, self.baseline)]


def bench_layer_set(name: str, layers: list[str], args: argparse.Namespace, base_model: LoadedModel,
                    prod_model: LoadedModel, root: Path, files: Sequence[FileEntry], settings: WorkerSettings,
                    device: torch.device) -> SetResult:  # fmt: skip
    """Warm up, then `--repeats` rounds of one product and one baseline pass, in alternating order so
    that a trend in the machine's load does not favour either path."""
    prod_runs: list[Timing] = []
    base_runs: list[Timing] = []
    stats_runs: list[Timing] = []
    with Extractor(prod_model, layers, device) as extractor:
        if args.warmup:
            _, good = product_pass(extractor, prod_model, root, files, settings, device, limit_batches=args.warmup)
            if not args.skip_baseline:
                baseline_pass(base_model, root, good[: args.warmup * BASELINE_BATCH], layers, device)
        good = []
        for round_ in range(args.repeats):
            notes = ""
            baseline_first = round_ % 2 == 1 and not args.skip_baseline  # `good` is known from round 0
            if baseline_first:
                notes += wait_for_idle(args.wait_idle)
                base_runs.append(baseline_pass(base_model, root, good, layers, device))
            notes += wait_for_idle(args.wait_idle)
            timing, good = product_pass(extractor, prod_model, root, files, settings, device)
            prod_runs.append(timing)
            if not baseline_first and not args.skip_baseline:
                notes += wait_for_idle(args.wait_idle)
                base_runs.append(baseline_pass(base_model, root, good, layers, device))
            progress = f"  {name} round {round_ + 1}: product ({settings.decode}) {timing.rate:.1f} images/s"
            if args.image_stats:  # right after the product pass it is compared with
                notes += wait_for_idle(args.wait_idle)
                stats_runs.append(product_pass(extractor, prod_model, root, files, settings, device,
                                               with_image_stats=True)[0])  # fmt: skip
                progress += f", product+stats {stats_runs[-1].rate:.1f} images/s"
            if base_runs:
                base = base_runs[-1].rate
                progress += f", baseline {base:.1f} images/s, ratio {timing.rate / base:.2f}x"
            print(f"{progress} (load average {os.getloadavg()[0]:.1f}{notes})", flush=True)
    errors = relative_errors(base_runs[-1].stats, prod_runs[-1].stats) if base_runs else {}
    return SetResult(name, settings.decode, layers, base_runs, prod_runs, errors, stats_runs)


def print_report(results: Sequence[SetResult]) -> float:
    """The images/s table, the speed-ups against the targets and the numeric differences; returns the
    worst relative difference."""
    width = max(len("layer set"), *(len(r.label) for r in results))
    print(f"\n{'layer set':<{width}} {'path':<10} {'layers':>6} {'images':>6} {'rounds':>6} {'images/s':>9} "
          f"{'best':>7} {'CPU s/img':>9}")  # fmt: skip
    for r in results:
        for path, runs in (("baseline", r.baseline), ("product", r.product), ("+stats", r.with_stats)):
            if runs:
                print(f"{r.label:<{width}} {path:<10} {len(r.layers):>6} {runs[0].images:>6} {len(runs):>6} "
                      f"{median([t.rate for t in runs]):>9.1f} {max(t.rate for t in runs):>7.1f} "
                      f"{median([t.cpu_per_image for t in runs]):>9.3f}")  # fmt: skip
    print("images/s and CPU s/img: median over rounds; best: the fastest round")
    for r in results:
        if r.with_stats:
            cost = median([w.seconds / p.seconds - 1 for w, p in zip(r.with_stats, r.product)])
            cpu = median([w.cpu_per_image - p.cpu_per_image for w, p in zip(r.with_stats, r.product)])
            print(f"image_stats overhead {r.label}: {cost:+.1%} wall time (median over rounds of "
                  f"product+stats / product - 1), {cpu * 1e3:+.2f} ms CPU per image")  # fmt: skip
    compared = [r for r in results if r.baseline]
    if not compared:
        return 0.0
    print("\nspeed-up = median over rounds of product images/s / baseline images/s (each round runs the two "
          "back to back);\nalso: best / best, and baseline CPU s/img / product CPU s/img (medians)")  # fmt: skip
    for r in compared:
        ratio = median(r.ratios())
        target = TARGETS.get(r.name)
        verdict = f", target >= {target}x: {'met' if ratio >= target else 'NOT met'}" if target else ""
        rounds = " ".join(f"{x:.2f}x" for x in r.ratios())
        best = max(t.rate for t in r.product) / max(t.rate for t in r.baseline)
        cpu = median([t.cpu_per_image for t in r.baseline]) / median([t.cpu_per_image for t in r.product])
        print(f"speed-up {r.label}: {ratio:.2f}x{verdict} (rounds {rounds}; best/best {best:.2f}x; CPU {cpu:.2f}x)")
    print("\nnumerics, same images: max|baseline - product| / max|baseline| over images and units, per layer "
          "and stat; [unit] = the worst unit of max|b - p| / max|b| over images")  # fmt: skip
    print(f"{'layer':<9} " + " ".join(f"{s:>9}" for s in STAT_NAMES) + "  "
          + " ".join(f"{'[unit] ' + s:>12}" for s in STAT_NAMES))  # fmt: skip
    worst = 0.0
    seen: set[tuple[str, str]] = set()
    for r in compared:
        for layer, (whole, per_unit) in r.errors.items():
            if (layer, r.decode) not in seen:
                seen.add((layer, r.decode))
                if r.decode == "pil":  # gpu decode changes the pixels a little: not held to TOLERANCE
                    worst = max(worst, *whole)
                print(f"{layer if r.decode == 'pil' else layer + '/' + r.decode:<9} " + " ".join(f"{e:>9.1e}" for e in whole) + "  "
                      + " ".join(f"{e:>12.1e}" for e in per_unit))  # fmt: skip
    print(f"worst: {worst:.1e} (tolerance {TOLERANCE:.0e}: {'ok' if worst <= TOLERANCE else 'EXCEEDED'})")
    return worst


def print_cli(result: SetResult, timing: Timing, width: int) -> None:
    """One line for a `python -m worker run` pass, with its ratio to the set's median baseline."""
    base = median([t.rate for t in result.baseline]) if result.baseline else None
    ratio = f"{timing.rate / base:.2f}x baseline" if base else ""
    print(f"{result.label:<{width}} cli+duckdb {len(result.layers):>6} {timing.images:>6} {timing.seconds:>7.1f}s "
          f"{timing.rate:>9.1f} images/s {ratio}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Exit code 0, or 1 when the product's statistics differ from the baseline's beyond TOLERANCE."""
    args = build_parser().parse_args(argv)
    try:
        return bench(args)
    except (ValueError, OSError) as error:  # bad folders and weights: one line, like the worker's CLI
        print(f"error: {error}", file=sys.stderr)
        return 2


def bench(args: argparse.Namespace) -> int:
    """Load, run every layer set, print the report."""
    if args.images is None:
        raise SystemExit("error: --images DIR is required (an ImageFolder, e.g. ../shared/data/imagenet-sample)")
    if args.weights is None:
        raise SystemExit("error: --weights is required (e.g. ../shared/models/bvlc_googlenet)")
    if args.limit < 1 or args.repeats < 1 or args.warmup < 0:
        raise SystemExit("error: --limit and --repeats must be at least 1, --warmup at least 0")
    device = resolve_device(args.device)
    root = args.images.expanduser().resolve()
    settings = WorkerSettings(images=root, model=args.model, weights=args.weights, device=device.type,
                              limit=args.limit, batch_size=args.batch_size, workers=args.workers)  # fmt: skip
    files = spread_subset(list_image_files(root), args.limit)
    for entry in files:  # warm the page cache, so neither path pays for the disk
        Path(root, entry.path).read_bytes()
    base_model = get_model(args.model, weights=args.weights)  # separate instances: the Extractor
    prod_model = get_model(args.model, weights=args.weights)  # converts its net to channels_last
    layer_sets = [(name, prod_model.select_layers(names)) for name, names in args.layers]
    base_model.net.to(device)

    workers = settings.workers if settings.workers is not None else default_workers()
    print(machine_line(device))
    print(f"images: {len(files)} files spread over {root}; model {prod_model.name}, weights sha256 "
          f"{prod_model.weights_sha256[:12]}…, fp32")  # fmt: skip
    print(f"baseline: ImageFolder, 0 workers, batch {BASELINE_BATCH}, full forward, whole maps kept; "
          f"product: batch {settings.batch_size_for(device.type)}, {workers} loader workers, "
          f"worker.extract.Extractor, decode {' and '.join(args.decode)}")  # fmt: skip
    results = [
        bench_layer_set(name, layers, args, base_model, prod_model, root, files,
                        settings.model_copy(update={"decode": decode}), device)  # fmt: skip
        for name, layers in layer_sets
        for decode in args.decode
    ]
    worst = print_report(results)
    if args.cli:  # last, so that the figures above are printed even if a run fails
        print("\n`python -m worker run` on the same files, whole run (model load, decoding, network, DuckDB writes "
              "and publication, whose fixed costs weigh heavily at a small --limit):")  # fmt: skip
        width = max(len("layer set"), *(len(r.label) for r in results))
        for r in results:
            run_settings = settings.model_copy(update={"layers": tuple(r.layers), "decode": r.decode})
            print_cli(r, cli_pass(run_settings, len(files)), width)
    print(machine_line(device).replace("machine:", "after:", 1))
    return 1 if worst > TOLERANCE else 0


if __name__ == "__main__":
    sys.exit(main())
