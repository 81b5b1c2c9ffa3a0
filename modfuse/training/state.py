"""TrainState: what a resumed run needs (model, optimizer, LR scheduler, RNG states), saved as
safetensors + JSON, one folder per epoch, published by an atomic update of ``latest.json``.

A folder holds ``model.safetensors``, ``optimizer.safetensors`` (the optimizer's tensors),
``rng.safetensors`` (the CPU's and every GPU's RNG state) and ``state.json`` (the optimizer's
and scheduler's plain values and the caller's metadata). Nothing is pickled.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from modfuse.io.tensor_files import (
    PathLike,
    atomic_write_json,
    check_state_fits,
    load_tensors,
    read_json,
    save_tensors,
    saved_dtypes,
    saved_shapes,
)


def optimizer_to_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into flat tensors and JSON-able metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    """Inverse of :func:`optimizer_to_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for pid, entry in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict[str, torch.Tensor]:
    """The CPU RNG state and, where CUDA is in use, every GPU's, as tensors for a checkpoint."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda.{i}"] = s
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_state` saved (GPU states where this machine has those GPUs)."""
    torch.set_rng_state(state["torch"])
    gpus = sorted((k for k in state if k.startswith("cuda.")), key=lambda k: int(k[5:]))
    cuda = [state[k] for k in gpus]
    here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda and len(cuda) != here:
        warnings.warn(
            f"the checkpoint holds the RNG state of {len(cuda)} GPUs, this machine uses {here}: "
            "random draws on the GPU after the resume differ from an uninterrupted run",
            stacklevel=2,
        )
    for i, s in enumerate(cuda[:here]):
        torch.cuda.set_rng_state(s, i)


def _scheduler_json(scheduler: LRScheduler) -> dict[str, Any]:
    state = scheduler.state_dict()
    try:
        json.dumps(state)
    except TypeError as err:
        raise ValueError(
            f"cannot checkpoint {type(scheduler).__name__}: its state_dict must hold plain "
            f"values (numbers, strings, lists, dicts) to be stored as JSON, but {err}"
        ) from err
    return state


class TrainState:
    """A training run's resumable state: model, optimizer, LR scheduler (if any), RNG states.

    Args:
        model: The model being trained.
        optimizer: Its optimizer.
        scheduler: Its learning-rate scheduler, if any (its state must be JSON-able, as every
            scheduler in ``torch.optim.lr_scheduler`` is, lambdas aside).

    Examples:
        >>> import tempfile
        >>> model = nn.Linear(2, 1)
        >>> opt = torch.optim.AdamW(model.parameters(), lr=0.1)
        >>> model(torch.ones(1, 2)).sum().backward(); opt.step()
        >>> folder = Path(tempfile.mkdtemp()) / "epoch-0000"
        >>> TrainState(model, opt).save(folder, {"epoch": 0})
        >>> copy = nn.Linear(2, 1)
        >>> TrainState(copy, torch.optim.AdamW(copy.parameters(), lr=0.1)).load(folder)
        {'epoch': 0}
        >>> torch.equal(copy.weight, model.weight)
        True
    """

    def __init__(
        self, model: nn.Module, optimizer: Optimizer, scheduler: LRScheduler | None = None
    ) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler

    def save(self, folder: PathLike, meta: dict[str, Any] | None = None) -> None:
        """Write the state, and ``meta`` (JSON-able) into ``folder``'s ``state.json``."""
        folder = Path(folder)
        tensors, optimizer_meta = optimizer_to_tensors(self.optimizer.state_dict())
        save_tensors(folder / "model.safetensors", self.model.state_dict())
        save_tensors(folder / "optimizer.safetensors", tensors)
        save_tensors(folder / "rng.safetensors", rng_state())
        state = {**(meta or {}), "optimizer": optimizer_meta}
        if self.scheduler is not None:
            state["scheduler"] = _scheduler_json(self.scheduler)
        atomic_write_json(folder / "state.json", state)

    def load(self, folder: PathLike) -> dict[str, Any]:
        """Restore what :meth:`save` wrote; returns its ``meta``.

        Raises:
            ValueError: the folder holds a scheduler's state and this state has no scheduler,
                or the other way round; or its ``model.safetensors`` does not hold the model's
                tensors (names, shapes, dtypes: a dtype edited in the header is refused, not
                converted).
        """
        folder = Path(folder)
        state = read_json(folder / "state.json")
        saved_scheduler = state.pop("scheduler", None)
        if (saved_scheduler is None) != (self.scheduler is None):
            held = "holds a" if saved_scheduler is not None else "holds no"
            given = "was given one" if self.scheduler is not None else "was given none"
            raise ValueError(
                f"{folder} {held} learning-rate scheduler state, but this TrainState {given}: "
                "resume with the scheduler setting the run was started with"
            )
        weights, own = folder / "model.safetensors", self.model.state_dict()
        check_state_fits(
            {k: tuple(v.shape) for k, v in own.items()},
            saved_shapes(weights),
            f"cannot resume from {weights}: it does not hold the tensors of the model being "
            "trained",
            expected_dtypes={k: v.dtype for k, v in own.items()},
            saved_dtypes=saved_dtypes(weights),
        )
        self.model.load_state_dict(load_tensors(weights))
        opt = optimizer_from_tensors(
            load_tensors(folder / "optimizer.safetensors"), state.pop("optimizer")
        )
        self.optimizer.load_state_dict(opt)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved_scheduler)
        set_rng_state(load_tensors(folder / "rng.safetensors"))
        return dict(state)


def save_epoch(root: PathLike, epoch: int, state: TrainState, meta: dict[str, Any]) -> None:
    """Write epoch ``epoch``'s checkpoint under ``root`` and publish it through ``latest.json``.

    Earlier epochs' folders are removed once the new one is published.
    """
    root = Path(root)
    folder = root / f"epoch-{epoch:04d}"
    if folder.exists():
        shutil.rmtree(folder)
    state.save(folder, {**meta, "epoch": epoch})
    # Publishing is one atomic rename: a kill before it leaves the previous epoch current.
    atomic_write_json(root / "latest.json", {"epoch": epoch, "folder": folder.name})
    for old in root.glob("epoch-*"):
        if old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)


def load_latest(root: PathLike, state: TrainState) -> dict[str, Any] | None:
    """Restore the checkpoint ``latest.json`` under ``root`` names; returns its metadata
    (with ``epoch``), or None when there is no checkpoint."""
    root = Path(root)
    if not (root / "latest.json").is_file():
        return None
    latest = read_json(root / "latest.json")
    return state.load(root / latest["folder"])


__all__ = ["TrainState", "load_latest", "rng_state", "save_epoch", "set_rng_state"]
