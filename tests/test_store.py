"""worker.store: the working file of a run, its batches, resume and refusals, on hand-made runs."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from hand_run import hand_stats, image, publish_hand_run, spec_for

from worker.run_rows import RunSpec
from worker.store import StoreError, WorkerStore


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
        with pytest.raises(StoreError, match="different configuration.*--restart") as refused:
            store.begin(spec_for(("a/0.JPEG",)))
        # what differs, and only that
        assert "it differs in files (--limit): 2, now 1)" in str(refused.value)
        store.discard_partial()
        assert store.begin(spec_for(("a/0.JPEG",))).resumed is False


def test_a_failed_batch_leaves_nothing_of_itself(tmp_path):
    db = tmp_path / "atomic.duckdb"
    spec = spec_for(("a/0.JPEG", "a/1.JPEG"))
    with WorkerStore.open(db) as store:
        store.begin(spec)
        with pytest.raises(ValueError, match="2 response rows for 1 images"):
            # the shapes are checked before anything is written
            store.write_batch([image(0, "a")], [(1, "a/1.JPEG", "x")], {"conv1": hand_stats()[:2]})
        assert store.begin(spec).done == frozenset()


def test_staged_rows_of_a_batch_killed_before_its_commit_are_written_over(tmp_path):
    db = tmp_path / "killed.duckdb"
    files = tuple(f"a/{i}.JPEG" for i in range(5))
    stats = hand_stats()  # 5 images x 2 units
    with WorkerStore.open(db) as store:
        store.begin(spec_for(files))
        store.write_batch([image(0, "a"), image(1, "a")], [], {"conv1": stats[:2]})
        # A batch whose arrays reached the disk but whose rows never committed (kill -9 between the two):
        store.staged.write("main", 2, {"conv1": np.full((3, 2, 3), 99.0, dtype=np.float32)})
    with WorkerStore.open(db) as store:
        assert store.begin(spec_for(files)).done == {0, 1}
        store.write_batch([image(4, "a")], [], {"conv1": stats[4:5]})  # lands on row 2, over the 99s
        store.write_batch([image(2, "a"), image(3, "a")], [], {"conv1": stats[2:4]})
        assert (db.parent / f"{db.name}.staged" / "main" / "conv1.f32").stat().st_size == 5 * 2 * 3 * 4
        store.publish()
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT unit, image_id, act_mean, act_max, act_min FROM responses").fetchall()
    # Storage order (unit, image_id), each value the one given for that image: none of the 99s.
    assert stored == [(u, i, *map(float, stats[i, u])) for u in range(2) for i in range(5)]


def test_an_unfinished_run_staged_by_an_older_unitscope_is_refused_with_the_way_out(tmp_path):
    db = tmp_path / "old.duckdb"
    spec = spec_for(("a/0.JPEG", "a/1.JPEG"))
    with WorkerStore.open(db) as store:
        store.begin(spec)
    # Working files of schema 6 and before kept a batch's responses as rows of responses_staging.
    with duckdb.connect(f"{db}.partial") as con:
        con.execute("CREATE TABLE responses_staging (run_id INTEGER, layer VARCHAR, unit SMALLINT, image_id INTEGER, "
                    "act_mean FLOAT, act_max FLOAT, act_min FLOAT)")
        con.execute("INSERT INTO responses_staging VALUES (1, 'conv1', 0, 0, 0, 1, -1)")
    with WorkerStore.open(db) as store:
        with pytest.raises(StoreError, match="staged by an older unitscope; pass --restart"):
            store.begin(spec)
        store.discard_partial()
        assert store.begin(spec).resumed is False


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
    with pytest.raises(StoreError, match="text.duckdb is not a DuckDB file, so not a unitscope DB"):
        WorkerStore.open(text)
    newer = tmp_path / "newer.duckdb"
    publish_hand_run(newer, ranked_k=2)
    with duckdb.connect(str(newer)) as con:
        con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 999"):
        WorkerStore.open(newer)


def test_missing_folder_is_a_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreError, match=f"{tmp_path / 'a-file'} is a file, not a folder"):
        WorkerStore.open(tmp_path / "a-file" / "x.duckdb")
    with pytest.raises(StoreError, match=f"folder {tmp_path / 'nope'} does not exist"):
        WorkerStore.open(tmp_path / "nope" / "x.duckdb")


def test_memory_limit_reaches_the_writing_connection(tmp_path):
    with WorkerStore.open(tmp_path / "limited.duckdb", memory_limit="300MB") as store:
        store.begin(spec_for(("a/0.JPEG",)))
        limit = store._work().execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit == "286.1 MiB"  # 300 MB, as DuckDB reports it
