"""`python -m worker run`: images -> GoogLeNet pre-ReLU unit statistics -> DuckDB, with progress.

Exit codes (every job): 0 done, or an identical run already published (3: done with files skipped, see `skipped`);
1 an error, one line; 2 a command line argparse cannot parse; 130 Ctrl-C, 143 SIGTERM (the same command resumes).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unitscope import schema
from unitscope.flags import SettingsError, add_flags, from_flags
from worker.ablate import (
    ablate,  # the interventions import torch inside their jobs, after the flags
)
from worker.categories import CategoryError, load_categories, load_imagenet_classes
from worker.db_files import noting_interrupts
from worker.export import export
from worker.image_stats import image_stats
from worker.publish import Published
from worker.run_rows import ImageRow, LayerSpec, RunSpec
from worker.settings import (
    AblateSettings,
    DeriveSettings,
    ExportSettings,
    VisualizeSettings,
    WorkerSettings,
)
from worker.shards import Rank, RankError, files_of, torchrun_rank
from worker.store import StoreError, WorkerStore
from worker.visualize import visualize

if TYPE_CHECKING:
    from worker.images import FileEntry

# torch, torchvision and the image code are imported inside run(), after the DB lock is taken, so
# that a wrong flag, a locked DB or an unwritable folder is reported within a second.

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SKIPPED = 3
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per WorkerSettings field, each overriding its UNITSCOPE_* variable."""
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="compute unit responses for an image folder and publish them to the DB",
        description="Compute per-image, per-unit pre-ReLU mean/max/min for the model's layers and "
        "publish them as one run in a DuckDB file. Rerunning an interrupted command resumes it. "
        "Exit codes: 0 done, 3 done with skipped files, 1 error, 130 interrupted.",
    )
    add_flags(run, WorkerSettings)
    derive = commands.add_parser(
        "derive",
        help="compute the derived tables of every published run of an existing DB (upgrades an older schema)",
        description="Rewrite the DB at the current schema version with every run's precomputed tables "
        "(worker.derived) computed afresh; responses, SI and ranks are copied as they are. "
        "Exit codes: 0 done, 1 error, 130 interrupted.",
    )
    add_flags(derive, DeriveSettings)
    visualize = commands.add_parser(
        "visualize", help="optimise images that drive a layer's units up and down (feature visualisation)",
        description="Feature visualisation (docs/interventions.md) of a published run's units, stored in its DB. "
        "Rerunning an interrupted command resumes it. Exit codes: 0 done, 1 error, 130 interrupted.")
    add_flags(visualize, VisualizeSettings)
    ablate = commands.add_parser(
        "ablate", help="the network's accuracy per class with a layer's selective units silenced, against random "
        "groups", description="Ablation (docs/interventions.md) on a published run's images, stored in its DB. "
        "Rerunning an interrupted command resumes it. Exit codes: 0 done, 1 error, 130 interrupted.")
    add_flags(ablate, AblateSettings)
    export = commands.add_parser(
        "export", help="every table of the DB as Parquet files (responses, SI, ranks, derived tables, labels)",
        description="DuckDB's EXPORT DATABASE in Parquet: one file per table, and schema.sql and load.sql to "
        "rebuild the DB. Exit codes: 0 done, 1 error, 130 interrupted.")
    add_flags(export, ExportSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    debug = bool(args.debug)
    rank = torchrun_rank()
    where = "" if rank is None else f" ({rank})"
    with noting_interrupts() as interrupted:
        try:
            if args.command in _JOBS:
                settings_class, job = _JOBS[args.command]
                job_settings = from_flags(settings_class, args)
                debug = job_settings.debug
                return job(job_settings)
            settings = from_flags(WorkerSettings, args)
            debug = settings.debug
            return run(settings)
        except BaseException as exc:
            # An interrupt inside a DuckDB statement comes back as DuckDB's error (or a RuntimeError), not as one.
            if interrupted or isinstance(exc, KeyboardInterrupt):
                print(f"\ninterrupted{where}; rerun the same command to resume", file=sys.stderr)
                return 128 + interrupted[0] if interrupted else EXIT_INTERRUPTED
            if not isinstance(exc, (SettingsError, CategoryError, StoreError, ValueError, OSError, RankError)):
                raise
            # User errors (bad paths, locked or read-only DB, bad weights, unknown layer, bad category
            # file) and another rank's failure all end here as one line; --debug shows where.
            if debug:
                traceback.print_exc()
            print(f"error{where}: {exc}", file=sys.stderr)
            if rank is not None:
                from worker.distributed import record_failure

                record_failure(exc)  # torchrun's failure summary then shows the cause beside the rank
            return EXIT_ERROR


@dataclass
class _Counts:
    images: int = 0
    skipped: int = 0
    seconds: float = 0.0  # decoding + network + batch writes, without startup and publishing


def run(settings: WorkerSettings) -> int:
    """Do one run as configured; returns the exit code.

    Under torchrun (worker.shards, worker.distributed) every rank computes its block of the file
    list into its own shard; rank 0, which holds the DB lock, folds the shards into the working
    file once all are stored, then runs the second pass and publishes alone.
    """
    started = time.perf_counter()
    rank = torchrun_rank()
    categories = load_categories(settings.categories)
    with _open_store(settings, rank) as store:  # lock first: a second worker stops here
        from worker.images import list_image_files, require_usable, spread_subset

        root = _images_root(settings)
        listed = list_image_files(root)
        files = require_usable(root, spread_subset(listed, settings.limit), len(listed))  # none usable: say why
        subset = ""
        if len(files) < len(listed):
            subset = f" (--limit: using {len(files)}, spread evenly: about 1 file in {len(listed) / len(files):.0f})"
        _say(f"found {len(listed)} image files in {root}{subset}", rank)

        from worker.models import (  # torch loads here, after the cheap checks
            DEFAULT,
            get_model,
        )

        model_name = settings.resolved_model()
        seed = settings.init_seed()  # not None for --weights random: get_model's weights=None
        if seed is not None:
            model = get_model(model_name, weights=None, seed=seed)
        else:
            model = get_model(model_name, weights=DEFAULT if settings.weights is None else settings.weights)
        layers = model.select_layers(settings.layers)
        basis_layers = settings.resolved_basis_layers(layers, list(model.taps))  # a ValueError names unknown ones
        from worker.device_decode import preprocessing_json
        from worker.extract import Extractor, resolve_device

        device = resolve_device(settings.device)
        if rank is not None:
            from worker import distributed

            device = distributed.start(rank, device, settings.dist_timeout)
        spec = RunSpec(
            model=model.name,
            weights=model.weights,
            weights_sha256=model.weights_sha256,
            preprocessing=preprocessing_json(model, settings.decode),
            images_root=str(root),
            files=tuple(entry.path for entry in files),
            layers=tuple(
                LayerSpec(
                    name=layer, position=list(model.taps).index(layer), units=model.taps[layer].units,
                    module=model.module_name(layer), branches=tuple(model.unit_branches(layer)),
                )
                for layer in layers
            ),
            categories=tuple(categories),
            device=str(device),
            bases=settings.bases,
            basis_layers=basis_layers,
            network=tuple(model.taps),
        )
        config_hash = spec.config_hash()
        plan = _plan(settings, store, spec) if rank is None or rank.is_main else None
        if rank is not None:
            plan = distributed.share(plan, rank)
            if plan.config_hash != config_hash:
                raise StoreError(f"{rank} sees another configuration than rank 0 (another file list?); every "
                                 "node must see the same images folder at the same path")  # fmt: skip
        if plan.published is not None:
            _say(f"run {plan.published} in {store.db} already has this configuration; nothing to do "
                 "(--restart computes it again)", rank)  # fmt: skip
            return EXIT_OK
        mine = range(len(files))
        if rank is not None:
            mine = files_of(rank.rank, rank.world, len(files), settings.batch_size_for(device.type))
            if not rank.is_main:
                store.begin(spec)  # the shard, folded away by rank 0 before it shared the plan
        todo = [i for i in mine if i not in plan.done]
        if plan.resumed and (rank is None or rank.is_main):
            _say(f"resuming: {len(plan.done)} of {len(files)} files already stored in {store.partial}", rank)
        with Extractor(model, layers, device, bases=settings.bases, basis_layers=basis_layers,
                       keep_shown=rank is None or rank.is_main) as extractor:
            counts = _process(settings, store, root, files, todo, model.transform, extractor, device.type, rank)
            if rank is not None:
                store.close_work()  # closed before rank 0 folds it; rank 0 keeps its lock
                distributed.meet("every share stored", rank, settings.dist_timeout)
                distributed.stop()
                if not rank.is_main:
                    _say(f"{counts.images} images stored in {store.partial.name}; rank 0 publishes", rank)
                    return EXIT_OK
                store.fold_shards()
            _second_pass(settings, store, root, files, model.transform, extractor, device.type)
        result = store.publish()
    _summary(result, counts, time.perf_counter() - started, store.db, rank)
    return EXIT_SKIPPED if result.skipped else EXIT_OK


def derive(settings: DeriveSettings) -> int:
    """Recompute the derived tables of settings.db; returns the exit code."""
    started = time.perf_counter()
    with WorkerStore.open(settings.db, memory_limit=settings.memory_limit, upgrading=True) as store:
        _say(f"deriving the precomputed tables of every run in {store.db}…")
        layers = store.rederive()
    _say(f"{layers} layers derived in {time.perf_counter() - started:.1f} s; {store.db} is at schema version "
         f"{schema.SCHEMA_VERSION}")  # fmt: skip
    return EXIT_OK


_JOBS: dict[str, tuple[type, Any]] = {"derive": (DeriveSettings, derive), "visualize": (VisualizeSettings, visualize),
                                      "ablate": (AblateSettings, ablate), "export": (ExportSettings, export)}


@dataclass(frozen=True)
class _Plan:
    """What rank 0 (or the single process) found: the run already published, or the files done."""

    config_hash: str
    published: int | None = None
    done: frozenset[int] = frozenset()
    resumed: bool = False


def _open_store(settings: WorkerSettings, rank: Rank | None) -> WorkerStore:
    """The lock and the working file for a single process or rank 0; a shard for every other rank."""
    if rank is None or rank.is_main:
        return WorkerStore.open(settings.db, memory_limit=settings.memory_limit)
    return WorkerStore.open_shard(settings.db, rank, memory_limit=settings.memory_limit)


def _plan(settings: WorkerSettings, store: WorkerStore, spec: RunSpec) -> _Plan:
    """Start or resume the run in the working file (taking in any shards), unless it is published."""
    config_hash = spec.config_hash()
    if settings.restart:
        store.discard_partial()
    else:
        published = store.find_published(config_hash)
        if published is not None:
            if store.partial_hash() == config_hash:
                store.discard_partial()  # left behind by a crash right after publishing
            return _Plan(config_hash, published=published)
    progress = store.begin(spec)
    return _Plan(config_hash, done=progress.done, resumed=progress.resumed)


def _images_root(settings: WorkerSettings) -> Path:
    if settings.images is not None:
        return Path(settings.images).expanduser().resolve()
    from worker.download import ensure_default_images  # only needed without --images

    return Path(ensure_default_images(Path(settings.cache).expanduser())).resolve()


def _process(
    settings: WorkerSettings,
    store: WorkerStore,
    root: Path,
    files: list[FileEntry],
    todo_ids: list[int],
    transform,  # noqa: ANN001 - the model's image transform
    extractor,  # noqa: ANN001 - worker.extract.Extractor
    device_type: str,
    rank: Rank | None,
) -> _Counts:
    """Decode, run and store the files `todo_ids` (responses and image_stats), one transaction per batch."""
    from tqdm import tqdm

    from worker.images import build_loader, listing_problem

    classes = load_imagenet_classes()
    counts = _Counts()
    todo = [(i, files[i]) for i in todo_ids]
    # Files known to be bad from the listing alone are stored first, in one transaction.
    known_bad = [(i, e.path, listing_problem(e)) for i, e in todo]
    known_bad = [(i, path, reason) for i, path, reason in known_bad if reason is not None]
    if known_bad:
        store.write_batch([], known_bad, {})
        counts.skipped += len(known_bad)
    bad_ids = {i for i, _, _ in known_bad}
    decodable = [(i, e.path) for i, e in todo if i not in bad_ids]
    loader = build_loader(root, decodable, transform, settings, device_type)
    total = len(files) if rank is None else len(todo)  # a rank's bar counts its own share
    bar = tqdm(total=total, initial=total - len(decodable), unit="img", desc="images" if rank is None else f"{rank}",
               position=0 if rank is None else rank.local_rank, dynamic_ncols=True, smoothing=0.05,
               file=sys.stderr)  # fmt: skip
    started = time.perf_counter()
    with bar:
        for batch in loader:
            stats, low_level = {}, None
            if batch.pixels is not None:
                # On the device once, for the network and the low-level statistics of the same crops.
                pixels = batch.pixels.to(extractor.device, non_blocking=True)
                stats = extractor(pixels, [item.file_id for item in batch.good])
                low_level = image_stats(extractor.model.to_rgb255(pixels)).cpu().numpy()
            rows = []
            for item in batch.good:
                entry = files[item.file_id]
                known = classes.get(entry.wnid)
                rows.append(ImageRow(
                    item.file_id, entry.path, entry.wnid,
                    known.index if known else None, known.name if known else entry.wnid,
                    item.width, item.height, item.mode,
                ))  # fmt: skip
            bad = [(item.file_id, files[item.file_id].path, item.reason or "") for item in batch.bad]
            store.write_batch(rows, bad, {layer: s.numpy() for layer, s in stats.items()}, low_level)
            counts.images += len(rows)
            counts.skipped += len(bad)
            bar.update(len(rows) + len(bad))
            if counts.skipped:
                bar.set_postfix(skipped=counts.skipped, refresh=False)
    counts.seconds = time.perf_counter() - started
    return counts


def _second_pass(
    settings: WorkerSettings,
    store: WorkerStore,
    root: Path,
    files: list[FileEntry],
    transform,  # noqa: ANN001 - the model's image transform
    extractor,  # noqa: ANN001 - worker.extract.Extractor
    device_type: str,
) -> None:
    """Store the maps of the images unit pages show (worker.maps_pass), those not stored yet."""
    from worker.images import build_loader
    from worker.maps_pass import compute_maps

    todo, kept = extractor.shown.store_known(store, store.maps_todo())  # maps kept during the first pass
    _say(f"maps of the images unit pages show: {kept} kept from the first pass")
    if not todo:
        return
    _say(f"second pass: the maps of the {len(todo)} images shown on unit pages")
    loader = build_loader(root, [(i, files[i].path) for i in sorted(todo)], transform, settings, device_type)
    done = compute_maps(store, todo, loader, extractor)
    missing = f"; {done.failed} images no longer decode, their maps are missing" if done.failed else ""
    _say(f"second pass: {done.maps} maps of {done.images} images in {done.seconds:.1f} s{missing}")


def _summary(result: Published, counts: _Counts, seconds: float, db: Path, rank: Rank | None = None) -> None:
    rate = counts.images / counts.seconds if counts.seconds > 0 else 0.0
    who = "this session" if rank is None else f"this session, rank 0 of {rank.world}"  # its share: not the run's
    _say(
        f"run {result.run_id} published to {db}: {result.images} images, {result.skipped} skipped"
        f"{' (see the skipped table)' if result.skipped else ''}; {who}: {counts.images} images in "
        f"{counts.seconds:.1f} s ({rate:.1f} images/s), {seconds:.1f} s in all; DB {result.db_bytes / 1e6:.1f} MB, "
        f"{result.bytes_per_value:.2f} bytes per stored value"
    )


def _say(message: str, rank: Rank | None = None) -> None:
    print(message if rank is None else f"{rank}: {message}", file=sys.stderr, flush=True)
