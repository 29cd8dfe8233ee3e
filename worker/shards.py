"""The shards of a run under torchrun: which rank does which files, and folding its shards into the working file.

Every rank but rank 0 writes `<db>.shard-<rank>-of-<world>`, a working file like `<db>.partial`
(one transaction per batch), and its responses into its own part of `<db>.staged/` (worker.staged_arrays);
rank 0 writes `<db>.partial` itself. Rank 0 folds every shard's rows (only rows: the arrays stay where the
rows point) into `<db>.partial` when the ranks are done, and again at the start of any run, before it reports which
files are done: a rerun resumes whatever the shards hold, at any world size (with or without
torchrun), because the split only decides who computes what is still missing.

Torch-free, so that the CLI knows its rank before torch loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from unitscope import schema
from worker.db_files import StoreError, Transaction, first_line, remove, wal_of


@dataclass(frozen=True)
class Rank:
    """This process's place in a torchrun run."""

    rank: int  # global rank; 0 folds the shards, runs the second pass and publishes
    world: int  # processes in the run, on all nodes
    local_rank: int  # rank on this node: the GPU it uses

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that holds the DB lock and publishes."""
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world}"


class RankError(RuntimeError):
    """Another rank failed or vanished (worker.distributed); the message names this rank and where."""


def torchrun_rank() -> Rank | None:
    """The rank torchrun gave this process (its RANK, WORLD_SIZE, LOCAL_RANK), or None without torchrun."""
    # TORCHELASTIC_RUN_ID is what torch.distributed.is_torchelastic_launched() checks; read here
    # without importing torch.
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    return Rank(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))


def files_of(rank: int, world: int, n_files: int, batch_size: int) -> range:
    """The file ids `rank` computes: a contiguous block of whole batches of the sorted list.

    Whole batches because on the CPU a batch of one image gives other float32 values in the deeper
    layers than the same image in a larger batch (measured: mixed4a on); with blocks of whole
    batches, each rank runs the batches a single process would, so the DB is the same value for
    value.
    """
    batches = -(-n_files // batch_size)
    block = -(-batches // world) * batch_size
    return range(min(rank * block, n_files), min((rank + 1) * block, n_files))


def shard_path(db: Path, rank: int, world: int) -> Path:
    """The working file of `rank` (not 0) in a run of `world` processes."""
    return db.with_name(f"{db.name}.shard-{rank}-of-{world}")


def shard_files(db: Path) -> list[Path]:
    """Every shard beside `db`, of any world size, without DuckDB's .wal files."""
    return sorted(p for p in db.parent.glob(f"{db.name}.shard-*-of-*") if p.suffix != ".wal")


# The tables a shard adds to; the run's own rows (runs, layers, units, categories) are the same in
# every working file of one configuration.
_FOLDED = (schema.IMAGES, schema.IMAGE_STATS, schema.SKIPPED, schema.STAGED_ROWS)


def fold_shards(con: duckdb.DuckDBPyConnection, partial: Path, db: Path, config_hash: str) -> int:
    """Move every shard beside `db` into the working file `partial` (open as `con`); returns the files moved.

    One transaction per shard, then the shard is deleted. A shard whose files are all in `partial`
    already was folded by a run killed before it could delete it: it is deleted only.
    """
    moved = 0
    for shard in shard_files(db):
        literal = str(shard).replace("'", "''")
        try:
            con.execute(f"ATTACH '{literal}' AS shard")
        except duckdb.Error as exc:
            raise StoreError(
                f"cannot open the shard {shard}: {first_line(exc)}; is a rank of another run still writing "
                "it? Otherwise pass --restart to discard the unfinished run"
            ) from None
        try:
            moved += _fold_one(con, partial, shard, config_hash)
        finally:
            con.execute("DETACH shard")
        remove(shard, wal_of(shard))
    return moved


def _fold_one(con: duckdb.DuckDBPyConnection, partial: Path, shard: Path, config_hash: str) -> int:
    (found,) = con.execute(f"SELECT config_hash FROM shard.{schema.RUNS}").fetchone() or (None,)
    if found is None:
        return 0  # a rank killed before it stored anything
    if found != config_hash:
        raise StoreError(
            f"{shard} holds a share of an unfinished run with a different configuration; rerun that "
            "command to finish it, or pass --restart to discard it"
        )
    ids = (f"SELECT image_id AS id FROM shard.{schema.IMAGES} UNION ALL "
           f"SELECT file_id FROM shard.{schema.SKIPPED}")  # fmt: skip
    total, present = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE id IN (SELECT image_id FROM {schema.IMAGES}) "
        f"OR id IN (SELECT file_id FROM {schema.SKIPPED})) FROM ({ids})"
    ).fetchone()
    if present == total:
        return 0  # nothing, or folded already
    if present:
        raise StoreError(f"{shard} and {partial} both hold {present} of the same files; pass --restart")
    with Transaction(con, partial):
        for table in _FOLDED:
            con.execute(f"INSERT INTO {table} SELECT * FROM shard.{table}")
    return total
