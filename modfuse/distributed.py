"""torch.distributed helpers: one process per device, started by ``torchrun``.

``torchrun --nproc_per_node=N -m modfuse run CONFIG.yaml`` trains with
DistributedDataParallel (gloo on CPU, nccl on GPU, picked automatically), shards evaluation
across ranks with exact counts, and lets rank 0 alone write checkpoints and reports. Without
``torchrun`` (no ``WORLD_SIZE`` in the environment) everything runs in one process, unchanged.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def default_backend() -> str:
    """``nccl`` when CUDA is available, else ``gloo``."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group that ``torchrun`` describes in the environment.

    Returns:
        True when running with more than one process.

    Examples:
        >>> init_from_env()  # a plain Python process: nothing to join
        False
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend or default_backend())
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes files (rank 0, or the only process)."""
    return rank() == 0


def shard_indices(n: int) -> list[int]:
    """This rank's items of ``range(n)``: every ``world_size``-th, no padding, no duplicates.

    Examples:
        >>> shard_indices(5)  # one process: all of them
        [0, 1, 2, 3, 4]
    """
    return list(range(rank(), n, world_size()))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks (in place where distributed); returns it."""
    if is_distributed():
        if dist.get_backend() == "nccl" and not t.is_cuda:
            # nccl reduces CUDA tensors only: go through this rank's GPU and back.
            moved = t.to(device())
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            t.copy_(moved.cpu())
        else:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def shutdown() -> None:
    """Wait for every rank, then leave the process group (an exit without this can abort a
    rank that finishes first, while gloo tears its connections down during interpreter exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def device() -> torch.device:
    """This process's device: its GPU under torchrun with CUDA, the CPU otherwise."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
