"""The paper's penalty: ``alpha * ||theta_m||_p^p`` on one modality's fusion weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch

from modfuse._registry import register_regularizer
from modfuse.regularizers.base import Regularizer

if TYPE_CHECKING:
    from modfuse.model.fusion_model import FusionModel
    from modfuse.protocols import Fusion


@register_regularizer("modality_penalty")
class ModalityWeightPenalty(Regularizer):
    """Penalise the fusion parameters that act on one modality alone.

    With ``p=2`` this is ``CE + alpha * ||theta_fg||^2`` of *Contextual Fusion for Adversarial
    Robustness* (arXiv 2011.09526): when the foreground is known to be at risk, shrinking its
    fusion weights biases the fused model towards the background context.

    Args:
        modality: The modality whose branch (``model.fusion.branch(modality)``) is penalised.
        alpha: Strength.
        p: Norm order; the penalty is ``sum |w|^p`` over the branch's parameters.

    Examples:
        >>> from modfuse import FusionModel
        >>> mlp = {"name": "mlp", "in_dim": 4}
        >>> model = FusionModel({"fg": mlp, "bg": mlp}, num_classes=2)
        >>> reg = ModalityWeightPenalty("fg", alpha=0.5)
        >>> w = model.fusion.branch("fg").weight
        >>> torch.isclose(reg(model, {}, {}), 0.5 * w.pow(2).sum()).item()
        True
    """

    def __init__(self, modality: str, alpha: float = 1e-3, p: float = 2.0) -> None:
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if p <= 0:
            raise ValueError(f"p must be > 0, got {p}")
        self.modality: str = modality
        self.alpha, self.p = alpha, p

    def __call__(
        self, model: FusionModel, batch: dict[str, Any], outputs: dict[str, Any]
    ) -> torch.Tensor:
        # FusionModel checks at construction that its fusion is a Fusion (has branch()).
        branch = cast("Fusion", model.fusion).branch(self.modality)
        terms = [w.abs().pow(self.p).sum() for w in branch.parameters()]
        if not terms:  # a branch without parameters: nothing to penalise
            return torch.zeros(())
        return self.alpha * sum(terms[1:], terms[0])

    def __repr__(self) -> str:
        return f"ModalityWeightPenalty(modality={self.modality!r}, alpha={self.alpha}, p={self.p})"
