"""The process group of a run under torchrun: its backend, each rank's device, and the ranks' two meetings.

No tensor crosses ranks: each rank computes its own files into its own shard (worker.shards). The
ranks only meet twice: rank 0 tells the others what is left to do (one broadcast), and they wait
for each other once every share is stored (one barrier). Both are CPU objects, so they go through
gloo, also on GPUs, where the group is `cpu:gloo,cuda:nccl` (NCCL for the device tensors).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from worker.shards import Rank, RankError

T = TypeVar("T")


def start(rank: Rank, device: torch.device, timeout_s: float) -> torch.device:
    """Join the run's process group (torchrun's rendezvous: MASTER_ADDR, ...) and return this rank's device.

    On CUDA a rank uses the GPU of its LOCAL_RANK. `timeout_s` bounds every wait for the other ranks.
    """
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if rank.local_rank >= gpus:
            raise ValueError(
                f"{rank} has local rank {rank.local_rank} but this node has {gpus} GPU(s); "
                "give torchrun --nproc-per-node at most the node's GPUs"
            )
        device = torch.device("cuda", rank.local_rank)
        torch.cuda.set_device(device)
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return device


def share(value: T, rank: Rank) -> T:
    """Rank 0's `value`, on every rank (the others pass None)."""
    box = [value]
    try:
        dist.broadcast_object_list(box, src=0)
    except RuntimeError as exc:  # DistBackendError and the barrier's timeout too
        raise RankError(f"{rank}: no word from rank 0 ({_first_line(exc)})") from None
    return box[0]


def meet(name: str, rank: Rank, timeout_s: float) -> None:
    """Wait until every rank has reached `name`; after timeout_s, fail naming the ranks that did not."""
    try:
        dist.monitored_barrier(timeout=timedelta(seconds=timeout_s), wait_all_ranks=True)
    except RuntimeError as exc:  # DistBackendError and the barrier's timeout too
        raise RankError(f"{rank}: not every rank reached '{name}': {_first_line(exc)}") from None


def stop() -> None:
    """Leave the process group (rank 0 carries on alone: folding, second pass, publication)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def record_failure(exc: BaseException) -> None:
    """Write `exc` to torchrun's error file, so that its failure summary shows the cause beside the rank."""
    from torch.distributed.elastic.multiprocessing.errors import get_error_handler

    get_error_handler().record_exception(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
