"""TRADES-style consistency: keep predictions on perturbed inputs close to the clean ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from modfuse._registry import ATTACKS, register_regularizer
from modfuse.model.feature_head import FeatureHead
from modfuse.regularizers.base import Regularizer

if TYPE_CHECKING:
    from modfuse.model.fusion_model import FusionModel


@register_regularizer("consistency")
class ConsistencyRegularizer(Regularizer):
    """``beta * KL(softmax(clean logits) || softmax(perturbed logits))``.

    The perturbation is any modfuse attack or corruption (blur, noise, FGSM, PGD, drop...),
    applied to the inputs of the training step: raw inputs, or cached features when the head
    trains on features (then use a feature-space perturbation such as ``GaussianNoise``). The
    clean distribution is a fixed target (no gradient), as in TRADES (Zhang et al. 2019,
    arXiv 1901.08573).

    Args:
        perturbation: An attack object or an attack spec (``{"name": "noise", "std": 0.1}``).
        beta: Strength.

    Examples:
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": {"name": "mlp", "in_dim": 4}}, num_classes=3)
        >>> reg = ConsistencyRegularizer({"name": "noise", "std": 0.5, "targets": ["fg"]})
        >>> x = {"fg": torch.rand(8, 4)}
        >>> out = {"logits": model(x), "inputs": x, "labels": torch.zeros(8, dtype=torch.long),
        ...        "on_features": False}
        >>> float(reg(model, {}, out)) > 0
        True
    """

    def __init__(self, perturbation: Any, beta: float = 1.0) -> None:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.perturbation = ATTACKS.create(perturbation)
        self.beta = beta

    def __call__(
        self, model: FusionModel, batch: dict[str, Any], outputs: dict[str, Any]
    ) -> torch.Tensor:
        target = FeatureHead(model) if outputs["on_features"] else model
        perturbed = self.perturbation(target, outputs["inputs"], outputs["labels"])
        clean = F.softmax(outputs["logits"].detach(), dim=1)
        log_adv = F.log_softmax(target(perturbed), dim=1)
        return self.beta * F.kl_div(log_adv, clean, reduction="batchmean")
