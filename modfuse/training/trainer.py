"""Trainer: fit a FusionModel end to end or its fusion head on cached features.

Checkpoints are written every epoch (a :class:`modfuse.training.state.TrainState`: model,
optimizer and RNG state; safetensors + JSON, each epoch in its own folder, published by an
atomic update of ``latest.json``), so a killed run resumed with ``resume=True`` ends with the
same weights as one that was never interrupted.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

import modfuse.distributed as dist_utils
from modfuse._registry import ATTACKS
from modfuse.data.cache import FeatureDataset
from modfuse.data.loader import make_loader
from modfuse.devices import to_model
from modfuse.io.tensor_files import atomic_write_json, load_tensors, save_tensors
from modfuse.model.fusion_model import FusionModel
from modfuse.modes import eval_mode
from modfuse.training.loss import TrainLoss, TrainStep, batch_accuracy
from modfuse.training.setup import (
    check_numbers,
    collect_regularizers,
    data_size,
    place_model,
    unimodal_weight_for,
    warn_random_frozen,
)
from modfuse.training.state import TrainState, load_latest, save_epoch
from modfuse.validation import labels_of


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


class Trainer:
    """Fit a FusionModel: AdamW, seeded, validated each epoch, checkpointed, resumable.

    When the training data is a :class:`modfuse.data.FeatureDataset` (features from a
    :class:`modfuse.data.FeatureCache`), only the fusion and head are trained and no encoder
    runs. Otherwise the model is trained end to end on its inputs (frozen encoders stay frozen).
    Every trainable part is trained: a model with unimodal heads adds their loss, and one with
    learned placeholders (``missing="learned"``) needs modality dropout to train them.

    Args:
        model: The model to train (in place).
        epochs: Number of epochs.
        batch_size: Batch size.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        regularizers: :class:`modfuse.regularizers.Regularizer` objects, functions
            ``(model, batch, outputs) -> Tensor`` or specs (``{"name": "modality_penalty", ...}``).
        adversarial: An attack (or spec) for adversarial training: each batch is also attacked
            against the current model, and the loss mixes clean and adversarial terms.
        adversarial_mix: Weight of the adversarial term (1: adversarial examples only).
        modality_dropout: Probability of hiding a modality per sample (shortcut for adding
            :class:`modfuse.regularizers.ModalityDropout`).
        unimodal_weight: Weight of the unimodal heads' loss, ``unimodal_weight * mean over
            modalities of cross_entropy(model.unimodal_logits(features)[m], labels)`` on the
            clean features (its gradient reaches the encoders too). None: 1.0 when the model
            has unimodal heads, else 0; more than 0 for a model without them is an error.
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

    Raises:
        ValueError: a setting is out of range, ``unimodal_weight > 0`` for a model without
            unimodal heads, or learned placeholders that no regularizer trains.
        KeyError: a regularizer names a modality the model lacks.

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
        unimodal_weight: float | None = None,
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
        check_numbers(epochs, batch_size, lr, weight_decay, adversarial_mix)
        warn_random_frozen(model)
        self.model = model
        self.epochs, self.batch_size = epochs, batch_size
        self.lr, self.weight_decay = lr, weight_decay
        self.objective = TrainLoss(
            model,
            collect_regularizers(model, regularizers, modality_dropout),
            ATTACKS.create(adversarial) if adversarial is not None else None,
            adversarial_mix,
            unimodal_weight_for(model, unimodal_weight),
            amp,
        )
        self.seed = seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.restore_best = restore_best
        self.progress = progress and dist_utils.is_main()
        self.workers = workers
        self.device = torch.device(device) if device is not None else dist_utils.device()
        self.amp = amp
        self.channels_last = channels_last
        params = place_model(model, self.device, channels_last, compile)
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        self.state = TrainState(model, self.optimizer)
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] = {"epoch": -1, "val_acc": -1.0}

    # ------------------------------------------------------------------ one batch
    def _step(self, runner: nn.Module, batch: dict[str, Any], where: str) -> tuple[float, float]:
        batch = to_model(batch, self.model, self.channels_last)
        loss, logits = runner(batch)
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
        return value, batch_accuracy(logits.detach(), labels_of(batch).long())

    def evaluate(self, data: Dataset[Any]) -> float:
        """Accuracy of the model on ``data`` (eval mode, no gradients; sharded across ranks)."""
        on_features = isinstance(data, FeatureDataset)
        if dist_utils.is_distributed():
            data = Subset(data, dist_utils.shard_indices(data_size(data)))
        loader = make_loader(data, self.batch_size, workers=self.workers)
        counts = torch.zeros(2, dtype=torch.long)  # correct, total
        with eval_mode(self.model), torch.no_grad(), self.objective.autocast():
            for batch in loader:
                batch = to_model(batch, self.model, self.channels_last)
                labels = labels_of(batch).long()
                inputs = self.model.select(batch)
                # No regularizer transforms here: modality dropout is for training only.
                logits = self.model.fuse(inputs) if on_features else self.model(inputs)
                counts[0] += int((logits.argmax(1) == labels).sum())
                counts[1] += len(labels)
        counts = dist_utils.all_reduce_sum(counts.to(self.device)).cpu()
        return int(counts[0]) / max(int(counts[1]), 1)

    # ------------------------------------------------------------------ checkpoints
    def _ckpt_root(self) -> Path:
        return Path(self.run_dir or ".") / "checkpoints"

    def save_checkpoint(self, epoch: int) -> None:
        """Write epoch ``epoch``'s checkpoint and publish it through ``latest.json``."""
        if self.run_dir is None or not dist_utils.is_main():
            return
        meta = {"history": self.history, "best": self.best, "seed": self.seed}
        save_epoch(self._ckpt_root(), epoch, self.state, {**meta, "epochs": self.epochs})

    def load_checkpoint(self) -> int:
        """Restore the latest checkpoint; returns the next epoch to run (0 if none)."""
        meta = load_latest(self._ckpt_root(), self.state) if self.run_dir is not None else None
        if meta is None:
            return 0
        self.history, self.best = meta["history"], meta["best"]
        return int(meta["epoch"]) + 1

    # ------------------------------------------------------------------ fit
    def fit(
        self, train_data: Dataset[Any], val_data: Dataset[Any] | None = None, resume: bool = False
    ) -> list[dict[str, float]]:
        """Train; returns the per-epoch history (loss, accuracy, validation accuracy, time).

        Args:
            train_data: Dict samples (raw inputs) or a FeatureDataset (cached features).
            val_data: Validation data of the same kind; selects the best epoch.
            resume: Continue from the latest checkpoint in ``run_dir`` if there is one.
        """
        if data_size(train_data) == 0:
            raise ValueError("training data is empty")
        on_features = isinstance(train_data, FeatureDataset)
        start = self.load_checkpoint() if resume else 0
        if start == 0:
            torch.manual_seed(self.seed)
            self.history, self.best = [], {"epoch": -1, "val_acc": -1.0}
        runner = dist_utils.wrap_ddp(TrainStep(self.objective, on_features), self.device)
        sampler = dist_utils.train_sampler(train_data, self.seed)
        for epoch in range(start, self.epochs):
            t0 = time.perf_counter()
            self.model.train()
            if sampler is not None:
                sampler.set_epoch(epoch)
            # A fresh, reproducible shuffle per epoch.
            loader = make_loader(
                train_data,
                self.batch_size,
                shuffle=True,
                seed=self.seed * 100_003 + epoch,
                workers=self.workers,
                sampler=sampler,
            )
            desc = f"epoch {epoch + 1}/{self.epochs}"
            bar = tqdm(loader, desc=desc, disable=not self.progress, leave=False)
            losses, accs, sizes = [], [], []
            for i, batch in enumerate(bar):
                where = f"{desc}, step {i + 1}/{len(loader)}"
                loss, acc = self._step(runner, batch, where)
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
        best = self.run_dir / "best.safetensors" if self.run_dir is not None else None
        if self.restore_best and best is not None and best.is_file():
            self.model.load_state_dict(load_tensors(best))
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


__all__ = ["NonFiniteLossError", "Trainer", "history_table"]
