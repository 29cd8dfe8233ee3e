"""A run's responses while it runs: raw float32 arrays, one file per layer and part, written at disk speed.

`<db>.staged/<part>/<layer>.f32` holds rows of [units, (mean, max, min)] float32, one per image, in the
order its part wrote them. A part is one writer's: `main` for `<db>.partial`, a fresh name for each
torchrun shard, so that ranks never share a file and rank 0 folds only rows, never arrays. Which rows
count is the working file's business: a batch's arrays are written at the part's next row and made
durable, then its images and their `staged_rows` (image_id, part, row) are committed in one transaction
(worker.store). A batch killed before its commit left rows past the committed ones, which the next batch
writes over; nothing reads a row that no committed `staged_rows` row names.

Inserting rows into DuckDB while the network runs cost 2.7 M unit-rows/s, about 470 images/s for
GoogLeNet's 12 layers; these files take what the disk takes (bench/make_scale_db.py prints both).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from unitscope import schema
from worker.db_files import StoreError, write_error

MAIN_PART = "main"
VALUES = len(schema.STATS)  # mean, max, min
_BYTES = np.dtype(np.float32).itemsize
READ_BYTES = 64 << 20  # rows of a file mapped at a time by StagedArrays.read
SPLIT = "split"  # StagedArrays.chunks' scratch folder in the staged arrays' root, beside the parts
# Chunks of a layer from which StagedArrays.chunks splits the files rather than reading them once per chunk. A split
# costs about 40 reads of a file that the page cache holds (bench/staged_chunks.py, 1,024 units: 27 chunks at
# 286,000 images read in 6.4 s, split in 9.5 s; 61 chunks at 640,000, 31.4 against 19.9 s); a file past the page
# cache makes every read a disk's, and the split wins sooner.
SPLIT_FROM = 40


def narrow(ids: np.ndarray, values: np.ndarray, first_unit: int = 0) -> dict[str, np.ndarray]:
    """The rows of responses (unit, image_id, act_mean, act_max, act_min) of values [images, units, 3], in
    (unit, image_id) order when ids ascend: numpy columns for DuckDB to read."""
    units = values.shape[1]
    return {"unit": np.repeat(np.arange(first_unit, first_unit + units, dtype=np.int16), len(ids)),
            "image_id": np.tile(ids, units),
            **{column: np.ascontiguousarray(values[:, :, i].T).ravel()
               for i, column in enumerate(schema.STAT_COLUMN.values())}}


@dataclass(frozen=True)
class StagedIndex:
    """Where every committed image's responses sit: the same for every layer of the run."""

    ids: np.ndarray  # image ids, ascending
    parts: np.ndarray  # the part of each (object)
    rows: np.ndarray  # its row in that part's files


def staged_index(con: duckdb.DuckDBPyConnection, *, schema_prefix: str = "") -> StagedIndex:
    """The index of every image the working file `con` (or its attached `schema_prefix`, e.g. 'work.') has
    committed."""
    rows = con.execute(f"SELECT image_id, part, row FROM {schema_prefix}{schema.STAGED_ROWS} "
                       "ORDER BY image_id").fetchnumpy()
    return StagedIndex(rows["image_id"].astype(np.int32), np.asarray(rows["part"], dtype=object), rows["row"])


def staged_root(db: Path) -> Path:
    """The folder of a run's staged arrays, beside `db`."""
    return db.with_name(f"{db.name}.staged")


class StagedArrays:
    """The staged arrays of one DB's run in progress (every part)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, part: str, layer: str) -> Path:
        return self.root / part / f"{layer}.f32"

    def write(self, part: str, row: int, responses: Mapping[str, np.ndarray]) -> None:
        """Write one batch ({layer: float32 [images, units, 3]}) at `row` of `part`'s files and make it durable."""
        (self.root / part).mkdir(parents=True, exist_ok=True)
        for layer, stats in responses.items():
            values = np.ascontiguousarray(stats, dtype=np.float32)
            if values.ndim != 3 or values.shape[2] != VALUES:
                raise ValueError(f"{layer}: responses of shape {values.shape}, not (images, units, {VALUES})")
            path = self.path(part, layer)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    offset = row * values.shape[1] * VALUES * _BYTES
                    view = memoryview(values).cast("B")
                    while view:  # pwrite may write less than asked
                        written = os.pwrite(fd, view, offset)
                        view, offset = view[written:], offset + written
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise write_error(path, exc) from None

    def read(self, layer: str, units: int, index: StagedIndex, unit_slice: slice = slice(None)) -> np.ndarray:
        """float32 [images, units in unit_slice, 3] of `layer`, the images in index order (the whole file is read)."""
        start, stop, _ = unit_slice.indices(units)
        out = np.empty((len(index.rows), stop - start, VALUES), dtype=np.float32)
        for positions, block, rows in self._blocks(layer, units, index):
            out[positions] = block[rows, start:stop]
        return out

    def chunks(self, layer: str, units: int, index: StagedIndex, step: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first unit, float32 [images, `step` units from it, 3]) for each chunk of `layer`'s units, the images in
        index order, the layer's files read once.

        A chunk's units are a few of every row, so reading the files for each chunk (read) costs chunks x the files:
        quadratic in the images, as a chunk holds fewer units the more images there are (mixed5b's responses at 1.28M
        images took 549 s to publish, 8.9x the 62 s at 286,000). From SPLIT_FROM chunks on, one pass splits the rows
        by chunk into scratch files under SPLIT, each then read whole: the files read once and written once more, the
        disk of one layer's files for a while, the memory of a chunk and a mapped block.
        """
        firsts = range(0, units, step)
        if len(firsts) < SPLIT_FROM or not len(index.rows):
            for first in firsts:
                yield first, self.read(layer, units, index, slice(first, first + step))
            return
        scratch = self.root / SPLIT
        try:
            written = self._split(layer, units, index, step, scratch)
            for first in firsts:
                yield first, _unsplit(scratch / f"{first}.f32", written, len(index.rows), min(step, units - first))
        finally:  # also when the caller stops early: nothing of the split outlives the call
            shutil.rmtree(scratch, ignore_errors=True)

    def _split(self, layer: str, units: int, index: StagedIndex, step: int, scratch: Path) -> np.ndarray:
        """Append each block of `layer`'s rows to one scratch file per chunk of `step` units under `scratch` (made
        afresh: a killed publication's is written again); returns the index positions of the files' rows."""
        shutil.rmtree(scratch, ignore_errors=True)
        order: list[np.ndarray] = []
        try:
            scratch.mkdir(parents=True)
        except OSError as exc:
            raise write_error(scratch, exc) from None
        for positions, block, rows in self._blocks(layer, units, index):
            order.append(positions)
            block = block[rows]  # every unit of these rows, read once for all the chunks
            for first in range(0, units, step):
                path = scratch / f"{first}.f32"
                try:
                    with path.open("ab") as f:
                        f.write(np.ascontiguousarray(block[:, first:first + step]).data)
                except OSError as exc:
                    raise write_error(path, exc) from None
        return np.concatenate(order)

    def _blocks(self, layer: str, units: int,
                index: StagedIndex) -> Iterator[tuple[np.ndarray, np.memmap, np.ndarray]]:
        """(positions in the index, a mapped block [rows, units, 3] of a file, those images' rows in it) for every
        committed row of `layer`, READ_BYTES of a file at a time, in the files' order: a caller copies only the units
        it needs."""
        row_bytes = units * VALUES * _BYTES
        # A few units of every row touch every page of the file, and a mapped page that was read counts in the
        # process's RSS (RssFile) until it is unmapped: mapped whole, mixed5b's file at 286,000 images added 3.4 GB to
        # the RSS of one chunk's read. Mapped READ_BYTES of rows at a time, what is mapped is bounded at any size.
        step = max(1, READ_BYTES // row_bytes)
        for part in np.unique(index.parts):
            mine = np.flatnonzero(index.parts == part)
            mine = mine[np.argsort(index.rows[mine], kind="stable")]  # in the file's order
            rows = index.rows[mine]
            path = self.path(str(part), layer)
            needed = int(rows[-1]) + 1
            if not path.exists() or path.stat().st_size < needed * row_bytes:
                raise StoreError(f"{path} lacks rows that the working file says it holds; pass --restart")
            for first in range(0, needed, step):
                lo, hi = np.searchsorted(rows, [first, first + step])
                if lo == hi:
                    continue
                block = np.memmap(path, dtype=np.float32, mode="r", offset=first * row_bytes,
                                  shape=(int(rows[hi - 1]) + 1 - first, units, VALUES))
                yield mine[lo:hi], block, rows[lo:hi] - first
                del block

    def remove(self) -> None:
        """Delete every part (a published or discarded run)."""
        shutil.rmtree(self.root, ignore_errors=True)


def _unsplit(path: Path, written: np.ndarray, images: int, width: int) -> np.ndarray:
    """One chunk's scratch file (rows at index positions `written`) as float32 [images, width, 3] in index order,
    read a block at a time (no second copy of the chunk); the file is deleted once read."""
    out = np.empty((images, width, VALUES), dtype=np.float32)
    rows = max(1, READ_BYTES // (width * VALUES * _BYTES))
    with path.open("rb") as f:
        for at in range(0, len(written), rows):
            block = np.fromfile(f, dtype=np.float32, count=min(rows, len(written) - at) * width * VALUES)
            out[written[at:at + rows]] = block.reshape(-1, width, VALUES)
    path.unlink()
    return out
