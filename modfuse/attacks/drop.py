"""Missing data as a perturbation: remove modalities and let the model's policy fill them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from modfuse._registry import register_attack
from modfuse.attacks.base import Attack, AttackContext


@register_attack("drop")
class DropModality(Attack):
    """Remove the target keys from the inputs.

    The model then applies its missing-modality policy (``missing="zeros"`` / ``"learned"``;
    with ``"error"`` it raises, which is the honest answer for a model that cannot cope).

    Args:
        targets: Modalities to drop. Other arguments: see :class:`Attack`.

    Examples:
        >>> import torch
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, num_classes=3,
        ...                     missing="zeros")
        >>> x = {"fg": torch.rand(2, 3, 16, 16), "bg": torch.rand(2, 3, 16, 16)}
        >>> out = DropModality(targets=("bg",))(model, x, torch.tensor([0, 1]))
        >>> sorted(out), model(out).shape
        (['fg'], torch.Size([2, 3]))
    """

    input_kind = "any"
    norm = "none"
    strength_unit = "none"  # no strength: a modality is there or not

    def __init__(self, targets: Sequence[str] = ("fg",), **kw) -> None:
        super().__init__(targets, **kw)

    def perturb(self, ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {}
