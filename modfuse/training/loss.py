"""The training objective of one batch, and the module DistributedDataParallel wraps."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modfuse.devices import autocast
from modfuse.model.feature_head import FeatureHead
from modfuse.model.fusion_model import FusionModel
from modfuse.regularizers.base import Regularizer
from modfuse.validation import labels_of


def batch_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of rows of ``logits`` (B, K) whose argmax is the label (0 for none)."""
    return float((logits.argmax(1) == labels).float().mean()) if len(labels) else 0.0


class TrainLoss:
    """One batch's loss: cross-entropy (mixed with an adversarial term), plus the unimodal
    heads' term and every regularizer's.

    Args:
        model: The model being trained.
        regularizers: Checked regularizers
            (see :func:`modfuse.training.setup.collect_regularizers`).
        adversarial: An attack for adversarial training, or None.
        adversarial_mix: Weight of the adversarial term.
        unimodal_weight: Weight of ``mean over modalities of cross_entropy(unimodal logits)``.
        amp: Forward passes in bfloat16 under ``torch.autocast``.

    Examples:
        >>> mlp = {"name": "mlp", "in_dim": 3}
        >>> model = FusionModel({"a": mlp, "b": mlp}, num_classes=2, unimodal_heads=True)
        >>> loss = TrainLoss(model, [], None, 0.5, unimodal_weight=1.0)
        >>> x = {"a": torch.rand(4, 3), "b": torch.rand(4, 3)}
        >>> batch = {**x, "label": torch.tensor([0, 1, 1, 0])}
        >>> value, logits = loss(batch, on_features=False)
        >>> value.shape, logits.shape
        (torch.Size([]), torch.Size([4, 2]))
    """

    def __init__(
        self,
        model: FusionModel,
        regularizers: list[Regularizer],
        adversarial: Any,
        adversarial_mix: float,
        unimodal_weight: float,
        amp: bool = False,
    ) -> None:
        self.model, self.regularizers = model, regularizers
        self.adversarial, self.adversarial_mix = adversarial, adversarial_mix
        self.unimodal_weight, self.amp = unimodal_weight, amp
        # An attack on a view ("fg") trains on the batch's views; one on the raw image on the
        # raw inputs (both views move); without one, the model's default.
        self.raw_inputs: bool | None = (
            None
            if adversarial is None or model.views is None
            else bool(set(model.views.input_keys) & set(adversarial.targets))
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.model, self.amp)

    def logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits from features, after the regularizers' transforms (e.g. modality dropout)."""
        for r in self.regularizers:
            features = r.transform_features(self.model, features)
        return self.model.fuse(features)

    def __call__(
        self, batch: dict[str, Any], on_features: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss (a scalar) and the clean logits ``(B, K)`` of ``batch``."""
        model = self.model
        labels = labels_of(batch)
        model.check_labels(labels)
        labels = labels.long()
        inputs = model.select(batch, raw=self.raw_inputs)
        with self.autocast():
            features = dict(inputs) if on_features else model.encode(inputs)
            logits = self.logits(features).float()
        loss = F.cross_entropy(logits, labels)
        if self.adversarial is not None:
            adv = self.adversarial(FeatureHead(model) if on_features else model, inputs, labels)
            with self.autocast():
                adv_features = dict(adv) if on_features else model.encode(adv)
                adv_logits = self.logits(adv_features).float()
            mix = self.adversarial_mix
            loss = (1 - mix) * loss + mix * F.cross_entropy(adv_logits, labels)
        if self.unimodal_weight > 0:
            with self.autocast():
                per_modality = model.unimodal_logits(features)  # {m: (B, K)}
            terms = [F.cross_entropy(z.float(), labels) for z in per_modality.values()]
            loss = loss + self.unimodal_weight * torch.stack(terms).mean()
        outputs = {"logits": logits, "labels": labels, "inputs": inputs, "on_features": on_features}
        for r in self.regularizers:
            loss = loss + r(model, batch, outputs)
        return loss, logits


class TrainStep(nn.Module):
    """A :class:`TrainLoss` as a module, batch -> (loss, logits): what DDP wraps.

    It holds exactly the parts of the model the loss reaches (no encoders on cached features,
    no unimodal heads the loss leaves out), so DistributedDataParallel averages every gradient
    with ``find_unused_parameters=False`` and never waits for one that does not come.

    Examples:
        >>> mlp = {"name": "mlp", "in_dim": 3}
        >>> model = FusionModel({"a": mlp}, num_classes=2, unimodal_heads=True)
        >>> step = TrainStep(TrainLoss(model, [], None, 0.5, unimodal_weight=0.0), True)
        >>> sorted(step.parts)  # features in, unimodal heads unused: neither is held
        ['fusion', 'head', 'placeholders']
    """

    def __init__(self, loss: TrainLoss, on_features: bool) -> None:
        super().__init__()
        skip = {"encoders", "views"} if on_features else set()
        if loss.unimodal_weight == 0:
            skip.add("unimodal")
        model = loss.model
        self.parts = nn.ModuleDict({n: c for n, c in model.named_children() if n not in skip})
        self.own = nn.ParameterDict(dict(model.named_parameters(recurse=False)))
        self.loss, self.on_features = loss, on_features  # a TrainLoss is no nn.Module

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss(batch, self.on_features)
