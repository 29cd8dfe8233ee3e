"""`python -m worker ablate`: the network's accuracy per class with a layer's selective units silenced, against
random groups of as many units (the control), nothing silenced (the baseline) and, where asked, each unit alone
(worker.ablation), stored into the run's DB (schema.ABLATION_GROUPS, ABLATION_CLASSES).

The images are the run's own that have an ImageNet class, decoded again from the run's images folder. The
tallies are saved to `<db>.ablate.npz` about once a minute, so an interrupted job resumes from there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np

from unitscope import schema
from unitscope.data.interventions import control_units, selective_units
from unitscope.data.runs import table_names
from worker.interventions import Job, config_digest, say
from worker.settings import AblateSettings, parse_units

if TYPE_CHECKING:
    from worker.ablation import Tally

CHECKPOINT_SECONDS = 60.0


@dataclass(frozen=True)
class Group:
    """One group to ablate, as stored in schema.ABLATION_GROUPS."""

    name: str
    kind: str
    units: tuple[int, ...]
    category: str | None = None
    si_stat: str | None = None
    threshold: float | None = None
    seed: int | None = None


def plan_groups(job: Job, settings: AblateSettings, device_type: str) -> list[Group]:
    """The baseline, the selective group, the random groups as large as it, and any per-unit groups."""
    cat = settings.category
    selective = selective_units(job.source, job.run, job.layer, cat, settings.si_stat, settings.threshold)
    if not selective:
        raise ValueError(f"{job.layer} has no unit with SI ({settings.si_stat}) >= {settings.threshold:g} for {cat}; "
                         "pass a lower --threshold")
    if 2 * len(selective) > job.units:
        raise ValueError(f"{len(selective)} of {job.units} units are selective at SI ({settings.si_stat}) >= "
                         f"{settings.threshold:g}: too few others to draw random groups of as many; raise --threshold")
    spec = {"category": cat, "si_stat": settings.si_stat, "threshold": settings.threshold}
    # The selection is in the names, so that ablations at other specifications sit beside this one.
    chosen = f"{cat} {settings.si_stat}>={settings.threshold:g}"
    groups = [Group("baseline", "baseline", ()), Group(f"selective {chosen}", "selective", tuple(sorted(selective)), **spec)]
    for i in range(settings.groups):
        seed = settings.seed * 100_003 + i
        groups.append(Group(f"random {chosen} {i + 1}", "random",
                            tuple(control_units(job.units, selective, len(selective), seed)), seed=seed, **spec))
    per_unit = settings.units if settings.units is not None else ("all" if device_type == "cuda" else None)
    if per_unit == "selective":
        per_unit = ",".join(map(str, selective))  # each selective unit alone
    alone = parse_units(per_unit, job.units) if per_unit is not None else None
    groups += [Group(f"unit {unit}", "unit", (unit,)) for unit in alone or []]
    return groups


def _images(job: Job, limit: int | None) -> list[tuple[int, str, int]]:
    """(image id, path, class index) of the run's images with a class, spread evenly under --limit as a run's are."""
    from worker.images import spread_subset  # torch loads with it

    rows = job.source.rows(f"SELECT image_id, path, class_index FROM {schema.IMAGES} WHERE run_id = $run AND "
                           "class_index IS NOT NULL ORDER BY image_id", {"run": job.run.run_id})
    if not rows:
        raise ValueError(f"run {job.run.run_id} has no image of an ImageNet class: nothing to measure accuracy on")
    return [(int(i), p, int(c)) for i, p, c in spread_subset(rows, limit)]


def ablate(settings: AblateSettings) -> int:
    """Run the job; returns the exit code (0)."""
    import torch
    from tqdm import tqdm

    from worker.ablation import Ablator, Tally
    from worker.images import ImageDataset, default_workers, make_loader

    started = time.perf_counter()
    with Job("ablate", settings) as job:
        model = job.load_model()
        device = job.device()
        groups = plan_groups(job, settings, device.type)
        images = _images(job, settings.limit)
        root = Path(job.run.images_root)
        if not root.is_dir():
            raise ValueError(f"run {job.run.run_id}'s images folder {root} is not there; ablation decodes its images")
        config = {"run": job.run.run_id, "layer": job.layer, "groups": [g.units for g in groups],
                  "images": len(images), "weights": job.run.weights_sha256, "device": device.type}
        checkpoint = job.db.with_name(job.db.name + ".ablate.npz")
        digest = config_digest(config)
        tally = Tally(len(groups), len(model.class_names))
        done = _resume(checkpoint, digest, tally)
        batch_size = settings.batch_size_for(device.type)
        labels = {image_id: c for image_id, _, c in images}
        todo = images[done:]
        workers = settings.workers if settings.workers is not None else default_workers()
        loader = make_loader(ImageDataset(root, [(i, p) for i, p, _ in todo], model.transform),
                             batch_size=batch_size, workers=min(workers, max(1, len(todo) // batch_size)),
                             pin_memory=device.type == "cuda")
        orphaned = _orphaned(job, groups, len(images))
        if orphaned:
            say(f"warning: {orphaned} groups of {job.layer} stored by an earlier ablate job were tallied on another "
                f"number of images than this job's {len(images):,}; once this job replaces the baseline the pages leave "
                "them out until they are ablated again on these images (rerun with that job's --limit to keep them)")
        say(f"ablating {len(groups) - 1} groups of {job.layer}'s units (run {job.run.run_id}; {len(groups[1].units)} "
            f"selective for {settings.category}, {settings.groups} random groups as large) on {len(images)} images "
            f"on {device}" + (f"; resuming after {done}" if done else ""))
        model.net.to(device, memory_format=torch.channels_last)
        last_save = time.perf_counter()
        skipped, counting = 0, False
        with Ablator(model, job.layer, device) as ablator, \
                tqdm(total=len(images), initial=done, unit="img", desc="ablating", dynamic_ncols=True) as bar:
            try:
                for batch in loader:
                    skipped += len(batch.bad)
                    if batch.pixels is not None:
                        pixels = batch.pixels.to(device).contiguous(memory_format=torch.channels_last)
                        kept = ablator.early(pixels)
                        logits = ablator.logits(kept, [None if g.kind == "baseline" else g.units for g in groups])
                        counting = True  # from here until `done` counts the batch, the tallies are half-way
                        tally.add(logits, torch.tensor([labels[item.file_id] for item in batch.good]))
                    done += len(batch.good) + len(batch.bad)
                    counting = False
                    bar.update(len(batch.good) + len(batch.bad))
                    if time.perf_counter() - last_save > CHECKPOINT_SECONDS:
                        _save(checkpoint, digest, tally, done)
                        last_save = time.perf_counter()
            except KeyboardInterrupt:
                if not counting:  # what is tallied is kept: the rerun resumes after it
                    _save(checkpoint, digest, tally, done)
                raise
        _save(checkpoint, digest, tally, done)
        if not tally.n.sum():
            raise ValueError(f"none of run {job.run.run_id}'s {len(images)} images decodes from {root}: nothing measured")
        seconds = time.perf_counter() - started
        job.work(config)
        with job.transaction() as tx:  # a working file left by a crash while publishing holds these rows already
            tx.execute(f"DELETE FROM {schema.ABLATION_GROUPS}")
            tx.execute(f"DELETE FROM {schema.ABLATION_CLASSES}")
            write_tallies(tx, job.run.run_id, job.layer, groups, tally)
        job.write_classes(model)
        say("publishing…")
        job.publish([(schema.ABLATION_GROUPS, ("run_id", "layer", "name")),
                     (schema.ABLATION_CLASSES, ("run_id", "layer", "name"))])  # a group's classes, all replaced
        checkpoint.unlink(missing_ok=True)
        base = tally.top1[0].sum() / max(1, tally.n.sum())
        say(f"{len(groups) - 1} groups on {int(tally.n.sum())} images ({skipped} no longer decode) stored in {job.db} "
            f"in {seconds:.0f} s ({seconds / max(1, len(groups) - 1):.1f} s per group); baseline top-1 {base:.1%}")
    return 0


def _orphaned(job: Job, groups: list[Group], images: int) -> int:
    """Stored groups of the layer that this job does not replace and that were tallied on another number of images:
    its baseline will leave them out (unitscope.data.interventions.ablation_groups)."""
    if schema.ABLATION_GROUPS not in table_names(job.source):
        return 0
    names = [g.name for g in groups]
    return int(job.source.rows(
        f"SELECT count(*) FROM {schema.ABLATION_GROUPS} WHERE run_id = $run AND layer = $layer AND images <> $images "
        "AND NOT list_contains($names, name)",
        {"run": job.run.run_id, "layer": job.layer, "images": images, "names": names})[0][0])


def _resume(checkpoint: Path, digest: str, tally: Tally) -> int:
    """Images already tallied by an interrupted job of the same configuration (0 when none)."""
    if not checkpoint.exists():
        return 0
    with np.load(checkpoint) as saved:
        if str(saved["digest"]) != digest:
            return 0
        tally.restore({k: saved[k] for k in ("n", "top1", "top5", "p_true")})
        return int(saved["done"])


def _save(checkpoint: Path, digest: str, tally: Tally, done: int) -> None:
    """Write the tallies so far, atomically."""
    part = checkpoint.with_name(checkpoint.name + ".part")
    with open(part, "wb") as f:
        np.savez(f, digest=np.array(digest), done=np.array(done), **tally.state())
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, checkpoint)


def write_tallies(con: duckdb.DuckDBPyConnection, run: int, layer: str, groups: list[Group], tally: Tally) -> None:
    """The groups and their per-class tallies, as schema.ABLATION_GROUPS and ABLATION_CLASSES rows (in a transaction)."""
    images = int(tally.n.sum())
    con.executemany(f"INSERT INTO {schema.ABLATION_GROUPS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(run, layer, g.name, g.kind, g.category, g.si_stat, g.threshold, g.seed, images, list(g.units))
                     for g in groups])
    present = np.flatnonzero(tally.n)
    g, c = np.repeat(np.arange(len(groups)), present.size), np.tile(present, len(groups))
    frame = {"name": np.array([groups[i].name for i in g], dtype=object), "class_index": c.astype(np.int16),
             "n": tally.n[c], "top1": tally.top1[g, c], "top5": tally.top5[g, c], "p_true": tally.p_true[g, c]}
    con.register("_ablation_frame", frame)
    try:
        con.execute(f"INSERT INTO {schema.ABLATION_CLASSES} SELECT $run, $layer, name, class_index, n, top1, top5, "
                    "p_true FROM _ablation_frame", {"run": run, "layer": layer})
    finally:
        con.unregister("_ablation_frame")
