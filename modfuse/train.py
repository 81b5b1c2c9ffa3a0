"""Trainer: fit a FusionModel end to end or its fusion head on cached features.

Checkpoints are written every epoch (model, optimizer and RNG state; safetensors + JSON, each
epoch in its own folder, published by an atomic update of ``latest.json``), so a killed run
resumed with ``resume=True`` ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, DistributedSampler
from tqdm.auto import tqdm

from modfuse import distributed as dist_utils
from modfuse._registry import ATTACKS, REGULARIZERS
from modfuse.checkpoint import atomic_write_json, load_tensors, read_json, save_tensors
from modfuse.data.cache import FeatureDataset
from modfuse.data.loader import make_loader
from modfuse.devices import autocast, to_model
from modfuse.model import FusionModel, HeadView


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


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


class TrainStep(nn.Module):
    """One training step's forward: batch -> (loss, logits). What DistributedDataParallel wraps,
    so that gradients of everything the loss touches are averaged across ranks."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__()
        self.model = trainer.model
        self._trainer = [trainer]  # a list: not a submodule

    def forward(
        self, batch: dict[str, Any], on_features: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._trainer[0]._loss(batch, on_features)


def batch_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean()) if len(labels) else 0.0


class Trainer:
    """Fit a FusionModel: AdamW, seeded, validated each epoch, checkpointed, resumable.

    When the training data is a :class:`modfuse.data.FeatureDataset` (features from a
    :class:`modfuse.data.FeatureCache`), only the fusion and head are trained and no encoder
    runs. Otherwise the model is trained end to end on its inputs (frozen encoders stay frozen).

    Args:
        model: The model to train (in place).
        epochs: Number of epochs.
        batch_size: Batch size.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        regularizers: Regularizers or their specs (``{"name": "modality_penalty", ...}``).
        adversarial: An attack (or spec) for adversarial training: each batch is also attacked
            against the current model, and the loss mixes clean and adversarial terms.
        adversarial_mix: Weight of the adversarial term (1: adversarial examples only).
        modality_dropout: Probability of hiding a modality per sample (shortcut for adding
            :class:`modfuse.regularizers.ModalityDropout`).
        seed: Seed of everything ``fit`` draws: the shuffling of every epoch, random
            perturbations (adversarial training, modality dropout) and dropout. The model's
            initial weights are drawn when it is built, before the Trainer exists: call
            ``torch.manual_seed(seed)`` before building it (``modfuse run`` and the examples
            do), and the same seed gives the same weights, byte for byte, on one machine.
        run_dir: Where checkpoints and the best model go (None: nothing is written).
        restore_best: At the end, load the weights of the best validation epoch.
        progress: Show progress bars.
        workers: DataLoader workers (None: the machine's default).
        device: Where to train; None picks this process's GPU if there is one, else the CPU.
        amp: Mixed precision: forward passes in bfloat16 under ``torch.autocast``.
        channels_last: Images and convolution weights in channels-last memory (faster CNNs
            on recent GPUs and CPUs).
        compile: Run the encoders through ``torch.compile``.

    Under ``torchrun`` (an initialised process group, see :mod:`modfuse.distributed`) the
    step runs in DistributedDataParallel, each rank reads its shard of every epoch
    (DistributedSampler, seeded per epoch), validation is sharded with exact counts, and only
    rank 0 writes checkpoints.

    Examples:
        >>> from modfuse.data import FeatureDataset
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <...>
        >>> x = torch.randn(64, 4); y = (x[:, 0] > 0).long()
        >>> data = FeatureDataset({"a": x}, y)
        >>> model = FusionModel({"a": {"name": "mlp", "in_dim": 4, "hidden": [4]}}, num_classes=2)
        >>> history = Trainer(model, epochs=30, lr=0.05, progress=False).fit(data, data)
        >>> history[-1]["val_acc"] > 0.9
        True
    """

    def __init__(
        self,
        model: FusionModel,
        *,
        epochs: int = 10,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        regularizers: Sequence[Any] = (),
        adversarial: Any = None,
        adversarial_mix: float = 0.5,
        modality_dropout: float = 0.0,
        seed: int = 0,
        run_dir: str | os.PathLike | None = None,
        restore_best: bool = True,
        progress: bool = True,
        workers: int | None = None,
        device: str | torch.device | None = None,
        amp: bool = False,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"need epochs, batch_size >= 1, got {epochs}, {batch_size}")
        for name, value, low in (("lr", lr, 0.0), ("weight_decay", weight_decay, None)):
            if not math.isfinite(value) or (low is not None and value <= low) or value < 0:
                want = "a finite number > 0" if low is not None else "a finite number >= 0"
                raise ValueError(f"{name} must be {want}, got {value}")
        if not 0 <= adversarial_mix <= 1:
            raise ValueError(f"adversarial_mix must be in [0, 1], got {adversarial_mix}")
        self.model = model
        self.epochs, self.batch_size, self.lr, self.weight_decay = (
            epochs,
            batch_size,
            lr,
            weight_decay,
        )
        self.regularizers = [REGULARIZERS.create(r) for r in regularizers]
        if modality_dropout:
            self.regularizers.append(
                REGULARIZERS.create({"name": "modality_dropout", "p": modality_dropout})
            )
        for r in self.regularizers:
            modality = getattr(r, "modality", None)
            if modality is not None and modality not in model.modalities:
                raise KeyError(
                    f"regularizer {r!r} names modality {modality!r}; "
                    f"the model has {model.modalities}"
                )
        self.adversarial = ATTACKS.create(adversarial) if adversarial is not None else None
        # An attack on a view ("fg") trains on the batch's views; one on the raw image on the
        # raw inputs (both views move); without one, the model's default.
        self._raw_inputs: bool | None = (
            None
            if self.adversarial is None or model.views is None
            else bool({"image", "mask"} & set(self.adversarial.targets))
        )
        self.adversarial_mix = adversarial_mix
        self.seed = seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.restore_best = restore_best
        self.progress = progress and dist_utils.is_main()
        self.workers = workers
        self.device = torch.device(device) if device is not None else dist_utils.device()
        self.amp = amp
        self.channels_last = channels_last
        model.to(self.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if compile:
            for encoder in model.encoders.values():
                # Compile the forward, not the module: state_dict keys stay as they are.
                encoder.forward = torch.compile(encoder.forward)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] = {"epoch": -1, "val_acc": -1.0}

    # ------------------------------------------------------------------ steps
    def _forward(self, inputs: dict[str, torch.Tensor], on_features: bool) -> torch.Tensor:
        feats = dict(inputs) if on_features else self.model.encode(inputs)
        for r in self.regularizers:
            if hasattr(r, "transform_features"):
                feats = r.transform_features(self.model, feats)
        return self.model.fuse(feats)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.model, self.amp)

    def _loss(self, batch: dict[str, Any], on_features: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        labels = torch.as_tensor(batch["label"])
        model.check_labels(labels)
        labels = labels.long()
        inputs = model.select(batch, raw=self._raw_inputs)
        with self._autocast():
            logits = self._forward(inputs, on_features).float()
        loss = F.cross_entropy(logits, labels)
        if self.adversarial is not None:
            target = HeadView(model) if on_features else model
            adv = self.adversarial(target, inputs, labels)
            with self._autocast():
                adv_logits = self._forward(adv, on_features).float()
            adv_loss = F.cross_entropy(adv_logits, labels)
            loss = (1 - self.adversarial_mix) * loss + self.adversarial_mix * adv_loss
        outputs = {"logits": logits, "labels": labels, "inputs": inputs, "on_features": on_features}
        for r in self.regularizers:
            loss = loss + r(model, batch, outputs)
        return loss, logits

    def _step(
        self, runner: nn.Module, batch: dict[str, Any], on_features: bool, where: str
    ) -> tuple[float, float]:
        batch = to_model(batch, self.model, self.channels_last)
        loss, logits = runner(batch, on_features)
        value = float(loss.detach())
        finite = torch.tensor([math.isfinite(value)], dtype=torch.long)
        # Every rank stops together (one rank raising alone would leave the others waiting).
        if int(dist_utils.all_reduce_sum(finite)) != dist_utils.world_size():
            raise NonFiniteLossError(
                f"the training loss is {value} at {where}: stopped before this step changed the "
                "weights; the last finished epoch's checkpoint and best weights are kept. "
                "Lower the learning rate, check the inputs for NaN, or try amp=False."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        labels = torch.as_tensor(batch["label"]).long()
        return value, batch_accuracy(logits.detach(), labels)

    def evaluate(self, data: Dataset) -> float:
        """Accuracy of the model on ``data`` (eval mode, no gradients; sharded across ranks)."""
        on_features = isinstance(data, FeatureDataset)
        if dist_utils.is_distributed():
            data = torch.utils.data.Subset(data, dist_utils.shard_indices(len(data)))
        loader = make_loader(data, self.batch_size, workers=self.workers)
        was_training = self.model.training
        self.model.eval()
        counts = torch.zeros(2, dtype=torch.long)  # correct, total
        with torch.no_grad(), self._autocast():
            for batch in loader:
                batch = to_model(batch, self.model, self.channels_last)
                labels = torch.as_tensor(batch["label"]).long()
                # No regularizer transforms here: modality dropout is for training only.
                logits = self._eval_logits(batch, on_features)
                counts[0] += int((logits.argmax(1) == labels).sum())
                counts[1] += len(labels)
        self.model.train(was_training)
        counts = dist_utils.all_reduce_sum(counts.to(self.device)).cpu()
        return int(counts[0]) / max(int(counts[1]), 1)

    def _eval_logits(self, batch: dict[str, Any], on_features: bool) -> torch.Tensor:
        inputs = self.model.select(batch)
        return self.model.fuse(inputs) if on_features else self.model(inputs)

    # ------------------------------------------------------------------ checkpoints
    def _ckpt_root(self) -> Path:
        return Path(self.run_dir or ".") / "checkpoints"

    def save_checkpoint(self, epoch: int) -> None:
        """Write epoch ``epoch``'s checkpoint and publish it through ``latest.json``."""
        if self.run_dir is None or not dist_utils.is_main():
            return
        root = self._ckpt_root()
        folder = root / f"epoch-{epoch:04d}"
        if folder.exists():
            shutil.rmtree(folder)
        tensors, meta = optimizer_to_tensors(self.optimizer.state_dict())
        save_tensors(folder / "model.safetensors", self.model.state_dict())
        save_tensors(folder / "optimizer.safetensors", tensors)
        save_tensors(folder / "rng.safetensors", rng_state())
        state = {
            "epoch": epoch,
            "history": self.history,
            "best": self.best,
            "optimizer": meta,
            "seed": self.seed,
            "epochs": self.epochs,
        }
        atomic_write_json(folder / "state.json", state)
        # Publishing is one atomic rename: a kill before it leaves the previous epoch current.
        atomic_write_json(root / "latest.json", {"epoch": epoch, "folder": folder.name})
        for old in root.glob("epoch-*"):
            if old.name != folder.name:
                shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self) -> int:
        """Restore the latest checkpoint; returns the next epoch to run (0 if none)."""
        if self.run_dir is None or not (self._ckpt_root() / "latest.json").is_file():
            return 0
        latest = read_json(self._ckpt_root() / "latest.json")
        folder = self._ckpt_root() / latest["folder"]
        state = read_json(folder / "state.json")
        self.model.load_state_dict(load_tensors(folder / "model.safetensors"))
        opt = optimizer_from_tensors(
            load_tensors(folder / "optimizer.safetensors"), state["optimizer"]
        )
        self.optimizer.load_state_dict(opt)
        set_rng_state(load_tensors(folder / "rng.safetensors"))
        self.history, self.best = state["history"], state["best"]
        return int(state["epoch"]) + 1

    # ------------------------------------------------------------------ fit
    def fit(
        self, train_data: Dataset, val_data: Dataset | None = None, resume: bool = False
    ) -> list[dict[str, float]]:
        """Train; returns the per-epoch history (loss, accuracy, validation accuracy, time).

        Args:
            train_data: Dict samples (raw inputs) or a FeatureDataset (cached features).
            val_data: Validation data of the same kind; selects the best epoch.
            resume: Continue from the latest checkpoint in ``run_dir`` if there is one.
        """
        if len(train_data) == 0:
            raise ValueError("training data is empty")
        on_features = isinstance(train_data, FeatureDataset)
        start = self.load_checkpoint() if resume else 0
        if start == 0:
            torch.manual_seed(self.seed)
            self.history, self.best = [], {"epoch": -1, "val_acc": -1.0}
        step = TrainStep(self)
        runner: nn.Module = step
        sampler = None
        if dist_utils.is_distributed():
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # On cached features the encoders take no part in the loss.
            runner = DistributedDataParallel(
                step, device_ids=ids, find_unused_parameters=on_features
            )
            sampler = DistributedSampler(train_data, shuffle=True, seed=self.seed)
        for epoch in range(start, self.epochs):
            t0 = time.perf_counter()
            self.model.train()
            seed = self.seed * 100_003 + epoch  # a fresh, reproducible shuffle per epoch
            if sampler is not None:
                sampler.set_epoch(epoch)
            loader = make_loader(
                train_data,
                self.batch_size,
                shuffle=True,
                seed=seed,
                workers=self.workers,
                sampler=sampler,
            )
            desc = f"epoch {epoch + 1}/{self.epochs}"
            bar = tqdm(loader, desc=desc, disable=not self.progress, leave=False)
            losses, accs, sizes = [], [], []
            for step, batch in enumerate(bar):
                where = f"epoch {epoch + 1}/{self.epochs}, step {step + 1}/{len(loader)}"
                loss, acc = self._step(runner, batch, on_features, where)
                losses.append(loss)
                accs.append(acc)
                sizes.append(len(batch["label"]))
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
            n = sum(sizes)
            record = {
                "epoch": epoch,
                "train_loss": sum(lo * s for lo, s in zip(losses, sizes)) / n,
                "train_acc": sum(a * s for a, s in zip(accs, sizes)) / n,
                "val_acc": self.evaluate(val_data) if val_data is not None else float("nan"),
                "seconds": time.perf_counter() - t0,
            }
            self.history.append(record)
            if val_data is not None and record["val_acc"] > self.best["val_acc"]:
                self.best = {"epoch": epoch, "val_acc": record["val_acc"]}
                if self.run_dir is not None and dist_utils.is_main():
                    save_tensors(self.run_dir / "best.safetensors", self.model.state_dict())
            self.save_checkpoint(epoch)
        # Rank 0 wrote best.safetensors: every rank waits for it, then restores the same weights.
        dist_utils.barrier()
        if (
            self.restore_best
            and self.run_dir is not None
            and (self.run_dir / "best.safetensors").is_file()
        ):
            self.model.load_state_dict(load_tensors(self.run_dir / "best.safetensors"))
        if self.run_dir is not None:
            atomic_write_json(
                self.run_dir / "history.json", {"history": self.history, "best": self.best}
            )
        return self.history


def history_table(history: list[dict[str, float]]) -> str:
    """The history as a small Markdown table."""
    lines = ["| epoch | loss | train acc | val acc | s |", "|---|---|---|---|---|"]
    for h in history:
        lines.append(
            f"| {h['epoch'] + 1} | {h['train_loss']:.4f} | {h['train_acc']:.3f} | "
            f"{h['val_acc']:.3f} | {h['seconds']:.1f} |"
        )
    return "\n".join(lines)


__all__ = ["Trainer", "history_table"]
