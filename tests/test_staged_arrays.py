"""The staged arrays (worker.staged_arrays): what a publication reads back is what the batches wrote, whatever the
order of their rows and parts, a few rows of a file mapped at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worker import staged_arrays
from worker.staged_arrays import VALUES, StagedArrays, StagedIndex


def _staged(root: Path, units: int) -> tuple[StagedArrays, StagedIndex, list[np.ndarray]]:
    """Two parts' batches written out of order, and an index of ascending image ids whose rows are shuffled across
    both parts, with rows 4 and 17 of main never committed; and what each image's row holds, in index order."""
    rng = np.random.default_rng(11)
    staged = StagedArrays(root)
    written: dict[tuple[str, int], np.ndarray] = {}  # (part, row) -> [units, 3]
    for part, rows in (("main", 20), ("shard-1", 13)):
        values = rng.normal(size=(rows, units, VALUES)).astype(np.float32)
        for start in (8, 0, 16):  # batches written out of order, as resumed or interleaved writers do
            if start < rows:
                staged.write(part, start, {"conv1": values[start:start + 8]})
        written.update({(part, r): values[r] for r in range(rows)})
    # Image ids ascending, their rows shuffled across both parts; rows 4 and 17 of main are never committed.
    places = [p for p in written if p not in {("main", 4), ("main", 17)}]
    places = [places[i] for i in rng.permutation(len(places))]
    index = StagedIndex(ids=np.arange(len(places), dtype=np.int32), parts=np.array([p for p, _ in places], dtype=object),
                        rows=np.array([r for _, r in places]))
    return staged, index, [written[place] for place in places]


def test_read_gives_each_images_written_row_in_image_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    units = 5
    # Three rows a mapping: every read spans several blocks, some of them without a row the index names.
    monkeypatch.setattr(staged_arrays, "READ_BYTES", 3 * units * VALUES * 4)
    staged, index, rows = _staged(tmp_path / "run.duckdb.staged", units)
    for unit_slice in (slice(None), slice(1, 3), slice(4, 5)):
        expected = np.stack([row[unit_slice] for row in rows])
        np.testing.assert_array_equal(staged.read("conv1", units, index, unit_slice), expected)


@pytest.mark.parametrize("step", [1, 2, 3, 5])
def test_chunks_read_the_files_once_and_give_what_read_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              step: int) -> None:
    """Each chunk of units as read() gives it, the last one short; from SPLIT_FROM chunks on (3 here) the files are
    read once (split into scratch files, gone afterwards), with fewer each is read as before."""
    units = 5
    monkeypatch.setattr(staged_arrays, "READ_BYTES", 3 * units * VALUES * 4)
    monkeypatch.setattr(staged_arrays, "SPLIT_FROM", 3)
    staged, index, rows = _staged(tmp_path / "run.duckdb.staged", units)
    reads: list[str] = []
    real_blocks = StagedArrays._blocks
    monkeypatch.setattr(StagedArrays, "_blocks", lambda self, *a: reads.append("pass") or real_blocks(self, *a))
    got = list(staged.chunks("conv1", units, index, step))
    assert [first for first, _ in got] == list(range(0, units, step))
    for first, values in got:
        np.testing.assert_array_equal(values, np.stack([row[first:first + step] for row in rows]))
    assert len(reads) == (1 if len(got) >= 3 else len(got))
    assert not (staged.root / staged_arrays.SPLIT).exists()


def test_read_refuses_a_file_shorter_than_its_committed_rows(tmp_path: Path) -> None:
    staged = StagedArrays(tmp_path / "run.duckdb.staged")
    staged.write("main", 0, {"conv1": np.zeros((2, 3, VALUES), np.float32)})
    index = StagedIndex(ids=np.arange(3, dtype=np.int32), parts=np.array(["main"] * 3, dtype=object),
                        rows=np.arange(3))
    with pytest.raises(staged_arrays.StoreError, match="pass --restart"):
        staged.read("conv1", 3, index)


def test_chunks_leave_no_scratch_when_the_caller_stops_early_and_take_an_empty_index(tmp_path: Path,
                                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    units = 5
    monkeypatch.setattr(staged_arrays, "READ_BYTES", 3 * units * VALUES * 4)
    monkeypatch.setattr(staged_arrays, "SPLIT_FROM", 3)
    staged, index, rows = _staged(tmp_path / "run.duckdb.staged", units)
    chunks = staged.chunks("conv1", units, index, 1)
    first, values = next(chunks)  # a publication that failed on its first chunk
    np.testing.assert_array_equal(values, np.stack([row[0:1] for row in rows]))
    assert (staged.root / staged_arrays.SPLIT).exists()
    chunks.close()
    assert not (staged.root / staged_arrays.SPLIT).exists()
    empty = StagedIndex(ids=np.empty(0, np.int32), parts=np.empty(0, dtype=object), rows=np.empty(0, np.int64))
    assert [(f, v.shape) for f, v in staged.chunks("conv1", units, empty, 1)] == [(u, (0, 1, VALUES)) for u in range(5)]
