"""A hand-made worker run: five images, two units, stored through worker.store (used by the store and publish tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unitscope.schema import basis_staging_layer
from worker.categories import Category, builtin_category
from worker.run_rows import ImageRow, LayerSpec, RunSpec
from worker.store import WorkerStore

BEAGLE, TENCH, OTHER = "n02088364", "n01440764", "n09999999"
FISH = Category("fish", (TENCH,), "test")


def spec_for(files: tuple[str, ...], units: int = 2, categories: tuple[Category, ...] = ()) -> RunSpec:
    return RunSpec(
        model="bvlc-googlenet", weights="hand-made", weights_sha256="none", preprocessing=json.dumps({"x": 1}),
        images_root="/hand", files=files,
        layers=(LayerSpec(name="conv1", position=0, units=units, module="conv1/7x7_s2", branches=("conv",) * units),),
        categories=(builtin_category("dog"), *categories), device="cpu",
    )  # fmt: skip


def image(i: int, wnid: str) -> ImageRow:
    return ImageRow(i, f"{wnid}/{i}.JPEG", wnid, None, wnid, 8, 8, "RGB")


# Five images: dogs 0 and 2, fish 1 and 3, and 4 in neither category.
WNIDS = (BEAGLE, TENCH, BEAGLE, TENCH, OTHER)
#                      image:   0    1    2    3    4
UNIT0_MAX = np.array([4.0, 0.0, 2.0, 2.0, 1.0])
UNIT0_MIN = np.array([-1.0, -3.0, 0.0, -2.0, -3.0])
UNIT1_MAX = np.ones(5)  # never varies: SI undefined
UNIT1_MIN = -np.ones(5)


def hand_stats() -> np.ndarray:
    """[5 images, 2 units, (mean, max, min)]."""
    stats = np.zeros((5, 2, 3), dtype=np.float32)
    stats[:, 0, 1], stats[:, 0, 2] = UNIT0_MAX, UNIT0_MIN
    stats[:, 1, 1], stats[:, 1, 2] = UNIT1_MAX, UNIT1_MIN
    stats[:, :, 0] = 0.5 * (stats[:, :, 1] + stats[:, :, 2])
    return stats


def publish_hand_run(db: Path, ranked_k: int) -> int:
    spec = spec_for(tuple(f"{w}/{i}.JPEG" for i, w in enumerate(WNIDS)), categories=(FISH,))
    stats = hand_stats()
    with WorkerStore.open(db) as store:
        store.begin(spec)
        # Two batches, as the worker writes them; image 4 arrives first.
        store.write_batch([image(4, OTHER)], [], {"conv1": stats[4:5]})
        store.write_batch([image(i, WNIDS[i]) for i in range(4)], [], {"conv1": stats[:4]})
        return store.publish(ranked_k=ranked_k).run_id


def publish_mixed4c_run(db: Path, stats: np.ndarray, wnids: tuple[str, ...], categories: tuple[Category, ...],
                        bases: tuple[np.ndarray, ...] = ()) -> None:
    """Publish a one-batch run of `stats` [images, units, (mean, max, min)] as layer mixed4c, image i of class wnids[i];
    bases[b], of the same shape, as its random basis b's directions, staged as the worker stages them."""
    files = tuple(f"{w}/{i}.JPEG" for i, w in enumerate(wnids))
    units = stats.shape[1]
    spec = RunSpec(
        model="bvlc-googlenet", weights="synthetic", weights_sha256="none", preprocessing=json.dumps({"x": 1}),
        images_root=str(db.parent), files=files,
        layers=(LayerSpec(name="mixed4c", position=0, units=units, module="m", branches=("conv",) * units),),
        categories=categories, device="cpu", bases=len(bases), basis_layers=("mixed4c",) if bases else (),
    )  # fmt: skip
    staged = {basis_staging_layer("mixed4c", b): values for b, values in enumerate(bases)}
    with WorkerStore.open(db) as store:
        store.begin(spec)
        store.write_batch([ImageRow(i, f, w, None, w, 8, 8, "RGB") for i, (f, w) in enumerate(zip(files, wnids))],
                          [], {"mixed4c": stats, **staged})  # fmt: skip
        store.publish()
