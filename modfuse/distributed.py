"""torch.distributed helpers: one process per device, started by ``torchrun``.

``torchrun --nproc_per_node=N -m modfuse run CONFIG.yaml`` trains with
DistributedDataParallel (gloo on CPU, nccl on GPU, picked automatically), shards evaluation
across ranks with exact counts, and lets rank 0 alone write checkpoints and reports. Without
``torchrun`` (no ``WORLD_SIZE`` in the environment) everything runs in one process, unchanged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler


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


def state_hash(module: nn.Module) -> str:
    """A short hash of every tensor in a module's state: names, dtypes, shapes and bytes.

    Examples:
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> state_hash(a) == state_hash(a), state_hash(a) == state_hash(b)
        (True, False)
    """
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def check_same_weights(models: Mapping[str, nn.Module]) -> None:
    """Stop unless every rank holds the same models with the same weights and buffers.

    Each rank hashes each model's state (:func:`state_hash`) and the hashes are gathered on
    every rank, so all ranks raise together: a sharded evaluation of different weights would
    sum counts of different models into one report. Nothing to check (and no communication)
    in a single process.

    Raises:
        RuntimeError: naming each model whose weights differ (or that some rank lacks) and
            which ranks hold which version.

    Examples:
        >>> check_same_weights({"m": nn.Linear(2, 2)})  # one process: nothing to compare
    """
    if not is_distributed():
        return
    mine = {name: state_hash(model) for name, model in models.items()}
    every: list[dict[str, str] | None] = [None] * world_size()
    dist.all_gather_object(every, mine)
    problems = []
    for name in sorted({n for hashes in every for n in (hashes or {})}):
        versions: dict[str, list[int]] = {}
        for r, hashes in enumerate(every):
            versions.setdefault((hashes or {}).get(name, "missing"), []).append(r)
        if len(versions) > 1:
            held = ", ".join(f"ranks {ranks} {h}" for h, ranks in versions.items())
            problems.append(f"{name!r} ({held})")
    if problems:
        raise RuntimeError(
            "every rank must evaluate the same weights, but these models differ across ranks: "
            f"{'; '.join(problems)}. Load the models after rank 0 has written them (a barrier "
            "before reading) and from the same files"
        )


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


def wrap_ddp(module: nn.Module, where: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel inside a process group, else ``module`` itself.

    ``find_unused_parameters`` stays False: every trainable parameter of ``module`` must take
    part in every forward's loss (the Trainer hands in a module holding only those), so DDP
    neither searches the graph each step nor waits for a gradient that never comes.

    Examples:
        >>> net = nn.Linear(2, 2)
        >>> wrap_ddp(net, torch.device("cpu")) is net  # one process: nothing to wrap
        True
    """
    if not is_distributed():
        return module
    ids = [where.index] if where.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=False)


def train_sampler(dataset: Dataset[Any], seed: int) -> DistributedSampler[Any] | None:
    """This rank's shuffled shard of ``dataset`` inside a process group (call ``set_epoch``
    each epoch), else None (the loader shuffles itself).

    Examples:
        >>> train_sampler(torch.utils.data.TensorDataset(torch.zeros(4)), seed=0) is None
        True
    """
    if not is_distributed():
        return None
    return DistributedSampler(dataset, shuffle=True, seed=seed)
