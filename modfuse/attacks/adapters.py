"""Run single-input attack libraries (torchattacks) against one modality of a FusionModel."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from modfuse._registry import register_attack
from modfuse.attacks.base import Attack, AttackContext
from modfuse.attacks.checks import check_finite


class SingleInput(nn.Module):
    """A multi-input model seen as a one-tensor model: the other inputs are held fixed.

    Every call recomputes the whole model, as a single-input library expects.
    """

    def __init__(self, model: nn.Module, others: Mapping[str, torch.Tensor], key: str) -> None:
        super().__init__()
        self.model = model
        self.others = dict(others)
        self.key = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model({**self.others, self.key: x})


@register_attack("torchattacks")
class TorchAttacksAdapter(Attack):
    """Any torchattacks attack, on one named modality of a multi-input model.

    torchattacks is optional (``pip install torchattacks``); it takes images in [0, 1].

    Args:
        attack: A torchattacks class or its name (``"PGD"``, ``"CW"``, ``"AutoAttack"``...).
        target: The one input key to attack.
        **kwargs: The torchattacks attack's own arguments (``eps``, ``steps``...).

    Examples:
        >>> import torch
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, num_classes=3)
        >>> x = {"fg": torch.rand(2, 3, 16, 16), "bg": torch.rand(2, 3, 16, 16)}
        >>> attack = TorchAttacksAdapter("FGSM", target="fg", eps=4 / 255)
        >>> adv = attack(model, x, torch.tensor([0, 1]))
        >>> adv["bg"] is x["bg"], float((adv["fg"] - x["fg"]).abs().max()) <= 4 / 255 + 1e-6
        (True, True)
    """

    uses_gradients = True

    def __init__(self, attack: str | type, target: str = "fg", **kwargs: Any) -> None:
        super().__init__((target,), ranges={target: (0.0, 1.0)})
        for name, value in kwargs.items():
            # torchattacks takes its numbers unchecked: a NaN eps would give NaN images.
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                check_finite(value, name)
        self.attack = attack
        self.kwargs = kwargs

    def _attack_class(self) -> type:
        if not isinstance(self.attack, str):
            return self.attack
        try:
            import torchattacks
        except ImportError as err:
            raise ImportError(
                "TorchAttacksAdapter needs torchattacks: pip install torchattacks"
            ) from err
        if not hasattr(torchattacks, self.attack):
            raise KeyError(f"torchattacks has no attack {self.attack!r}")
        return getattr(torchattacks, self.attack)

    def perturb(self, ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        key = self.targets[0]
        wrapper = SingleInput(ctx.model, ctx.rest, key)
        atk = self._attack_class()(wrapper, **self.kwargs)
        if self.targeted:
            atk.set_mode_targeted_by_label(quiet=True)
        return {key: atk(x[key], ctx.labels)}
