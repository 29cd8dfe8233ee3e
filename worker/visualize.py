"""`python -m worker visualize`: the images that drive a layer's units up and down (worker.feature_vis), stored with
the network's own reading of each, into the run's DB (schema.UNIT_VISUALIZATIONS).

Default units: the layer's selective units (unit_si at --threshold on --si-stat) and as many of its other units
drawn at random (seeded) as the control group. Units are optimised together in batches of about --batch-size
images; each finished batch is committed to the working file `<db>.visualize`, so an interrupted job resumes.
"""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image

from unitscope import schema
from unitscope.data.interventions import control_units, selective_units
from worker.interventions import Job, say
from worker.settings import VisualizeSettings, parse_units


def choose_units(job: Job, settings: VisualizeSettings) -> tuple[list[int], int]:
    """The units to visualise, in order, and how many of them are selective (listed first)."""
    listed = parse_units(settings.units, job.units)
    if listed is not None:
        return listed, 0
    selective = selective_units(job.source, job.run, job.layer, settings.category, settings.si_stat,
                                settings.threshold)
    if not selective:
        raise ValueError(f"{job.layer} has no unit with SI ({settings.si_stat}) >= {settings.threshold:g} for "
                         f"{settings.category}; pass --units, or a lower --threshold")
    return selective + control_units(job.units, selective, len(selective), settings.seed), len(selective)


def dataset_extremes(job: Job) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's largest and smallest act_mean over the run's images: what an optimised image must beat."""
    data = job.source.arrays(
        f"SELECT unit, max(act_mean) AS hi, min(act_mean) AS lo FROM {schema.RESPONSES} "
        "WHERE run_id = $run AND layer = $layer GROUP BY unit ORDER BY unit",
        {"run": job.run.run_id, "layer": job.layer})
    hi, lo = np.full(job.units, np.nan), np.full(job.units, np.nan)
    hi[data["unit"]], lo[data["unit"]] = data["hi"], data["lo"]
    return hi, lo


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", optimize=True)
    return out.getvalue()


def visualize(settings: VisualizeSettings) -> int:
    """Run the job; returns the exit code (0)."""
    import torch
    from tqdm import tqdm

    from worker.feature_vis import Target, optimise, read

    started = time.perf_counter()
    with Job("visualize", settings) as job:
        units, n_selective = choose_units(job, settings)
        hi, lo = dataset_extremes(job)
        model = job.load_model()
        device = job.device()
        model.net.to(device)
        per_unit = 2 * settings.per_direction
        chunk = max(1, settings.batch_size_for(device.type) // per_unit)
        # Everything that decides the images: a working file left by another configuration is started afresh.
        config = {"run": job.run.run_id, "layer": job.layer, "units": units, "steps": settings.steps,
                  "size": settings.size, "seed": settings.seed, "per_direction": settings.per_direction,
                  "weights": job.run.weights_sha256, "device": device.type, "chunk": chunk, "objective": "input size"}
        con = job.work(config)
        done = {int(r[0]) for r in con.execute(f"SELECT DISTINCT unit FROM {schema.UNIT_VISUALIZATIONS}").fetchall()}
        todo = [u for u in units if u not in done]
        what = f"{n_selective} selective + {len(units) - n_selective} control units" if n_selective else \
            f"{len(units)} units"
        say(f"visualizing {what} of {job.layer} (run {job.run.run_id}), {settings.per_direction} images per "
            f"direction, {settings.steps} steps at {settings.size} px on {device}"
            + (f"; resuming: {len(units) - len(todo)} already done" if len(todo) < len(units) else ""))
        bar = tqdm(total=len(todo) * per_unit * settings.steps, unit="img-step", desc="optimising",
                   dynamic_ncols=True, smoothing=0.05)
        with bar, torch.random.fork_rng(devices=[]):
            for start in range(0, len(todo), chunk):
                batch = todo[start: start + chunk]
                # Each unit's negative images, then its positive ones; each (unit, direction) a diversity group.
                targets = [Target(u, sign, 2 * g + d) for g, u in enumerate(batch) for d, sign in enumerate((-1, 1))
                           for _ in range(settings.per_direction)]
                # One seed per batch, from the job's seed and the batch's first unit: a resumed job draws the same.
                seed = settings.seed * 100_003 + batch[0]
                images = optimise(model, job.layer, targets, steps=settings.steps, size=settings.size, seed=seed,
                                  device=device, progress=bar.update)
                reading = read(model, job.layer, images, [t.unit for t in targets], device=device)
                rows = []
                for i, target in enumerate(targets):
                    direction = "positive" if target.sign > 0 else "negative"
                    index = i % settings.per_direction
                    extreme = hi[target.unit] if target.sign > 0 else lo[target.unit]
                    rows.append((job.run.run_id, job.layer, target.unit, direction, index,
                                 png_bytes(images[i]), float(reading.objective[i]), float(extreme),
                                 settings.steps, settings.size, seed, reading.probs[i].astype(np.float32).tolist()))
                with job.transaction() as tx:
                    tx.executemany(f"INSERT INTO {schema.UNIT_VISUALIZATIONS} VALUES "
                                   "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        job.write_classes(model)
        seconds = time.perf_counter() - started
        say("publishing…")
        # A unit visualised again replaces all its images (another --per-direction leaves none behind).
        job.publish([(schema.UNIT_VISUALIZATIONS, ("run_id", "layer", "unit"))])
        rate = seconds / len(todo) / 2 if todo else 0.0
        resumed = f", {len(units) - len(todo)} of them from the interrupted job" if len(todo) < len(units) else ""
        say(f"{len(units) * per_unit} images of {len(units)} units stored in {job.db}{resumed}; {len(todo)} optimised "
            f"in {seconds:.0f} s: {rate:.1f} s per unit and direction ({settings.per_direction} images of "
            f"{settings.steps} steps at {settings.size} px)")
    return 0
