"""worker.store: the working file of a run, its batches, resume and refusals, on hand-made runs."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

from worker.categories import Category, builtin_category
from worker.store import ImageRow, LayerSpec, RunSpec, StoreError, WorkerStore

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


def test_unfinished_run_resumes_from_its_stored_batches(tmp_path):
    db = tmp_path / "resume.duckdb"
    spec = spec_for(("a/0.JPEG", "a/1.JPEG", "a/2.JPEG"))
    stats = hand_stats()[:3]
    with WorkerStore.open(db) as store:
        assert store.begin(spec).resumed is False
        store.write_batch([image(0, "a")], [(1, "a/1.JPEG", "empty file (0 bytes)")], {"conv1": stats[:1]})
    # (closed without publishing, as after a crash)
    assert not db.exists()
    with WorkerStore.open(db) as store:
        progress = store.begin(spec)
        assert progress.resumed and progress.done == {0, 1}
        with pytest.raises(StoreError, match="unfinished: 2 of 3 files"):
            store.publish()
        store.write_batch([image(2, "a")], [], {"conv1": stats[2:3]})
        published = store.publish()
    assert (published.images, published.skipped, published.responses) == (2, 1, 4)


def test_an_unfinished_run_of_another_configuration_is_not_mixed_in(tmp_path):
    db = tmp_path / "other.duckdb"
    with WorkerStore.open(db) as store:
        store.begin(spec_for(("a/0.JPEG", "a/1.JPEG")))
    with WorkerStore.open(db) as store:
        with pytest.raises(StoreError, match="different configuration.*--restart"):
            store.begin(spec_for(("a/0.JPEG",)))
        store.discard_partial()
        assert store.begin(spec_for(("a/0.JPEG",))).resumed is False


def test_a_failed_batch_leaves_nothing_of_itself(tmp_path):
    db = tmp_path / "atomic.duckdb"
    spec = spec_for(("a/0.JPEG", "a/1.JPEG"))
    with WorkerStore.open(db) as store:
        store.begin(spec)
        with pytest.raises(ValueError, match="2 response rows for 1 images"):
            # images are inserted first, then the response shape check fails inside the transaction
            store.write_batch([image(0, "a")], [(1, "a/1.JPEG", "x")], {"conv1": hand_stats()[:2]})
        assert store.begin(spec).done == frozenset()


def test_config_hash_ignores_device_but_not_files_or_weights():
    base = spec_for(("a/0.JPEG",))
    same = RunSpec(**{**base.__dict__, "device": "cuda:0"})
    other_files = RunSpec(**{**base.__dict__, "files": ("a/1.JPEG",)})
    other_weights = RunSpec(**{**base.__dict__, "weights_sha256": "abc"})
    assert base.config_hash() == same.config_hash()
    assert len({base.config_hash(), other_files.config_hash(), other_weights.config_hash()}) == 3


def test_a_db_that_is_not_a_unitscope_db_is_refused(tmp_path):
    foreign = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(StoreError, match="not a unitscope DB"):
        WorkerStore.open(foreign)
    text = tmp_path / "text.duckdb"
    text.write_text("hello")
    with pytest.raises(StoreError, match="cannot open .*text.duckdb as a DuckDB file"):
        WorkerStore.open(text)
    newer = tmp_path / "newer.duckdb"
    publish_hand_run(newer, ranked_k=2)
    with duckdb.connect(str(newer)) as con:
        con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 999"):
        WorkerStore.open(newer)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match=f"folder {tmp_path / 'nope'} does not exist"):
        WorkerStore.open(tmp_path / "nope" / "x.duckdb")


def test_memory_limit_reaches_the_writing_connection(tmp_path):
    with WorkerStore.open(tmp_path / "limited.duckdb", memory_limit="300MB") as store:
        store.begin(spec_for(("a/0.JPEG",)))
        limit = store._work().execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit == "286.1 MiB"  # 300 MB, as DuckDB reports it
