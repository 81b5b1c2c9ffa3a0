"""What a regularizer is: ``reg(model, batch, outputs) -> scalar`` added to the loss."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from modfuse.model.fusion_model import FusionModel

LossFn = Callable[["FusionModel", dict[str, Any], dict[str, Any]], torch.Tensor]


class Regularizer(abc.ABC):
    """A term added to the training loss; subclass it and write ``__call__``.

    ``outputs`` holds what the training step computed: ``logits`` (B, K), ``labels`` (B,),
    ``inputs`` (what the model was called on) and ``on_features`` (True when ``inputs`` are
    cached features, i.e. the model was called through ``fuse``).

    The Trainer asks every regularizer the members below; their defaults say "names no
    modality, changes no feature, hides nothing". Override those that apply. A plain function
    ``fn(model, batch, outputs) -> Tensor`` is accepted too, as a :class:`LossTerm`.

    Examples:
        >>> from modfuse import FusionModel
        >>> class L1OnHead(Regularizer):
        ...     def __call__(self, model, batch, outputs):
        ...         return sum(p.abs().sum() for p in model.head.parameters())
        >>> model = FusionModel({"a": {"name": "mlp", "in_dim": 3}}, "gated", num_classes=2)
        >>> reg = L1OnHead()
        >>> bool(reg(model, {}, {}) > 0), reg.named_modalities(), reg.hidden_modalities(model)
        (True, [], [])
    """

    #: The one modality this regularizer acts on (the Trainer checks the model has it), or None.
    modality: str | None = None

    @abc.abstractmethod
    def __call__(
        self, model: FusionModel, batch: dict[str, Any], outputs: dict[str, Any]
    ) -> torch.Tensor:
        """The term to add to the loss: a scalar tensor."""

    def named_modalities(self) -> list[str]:
        """Every modality this regularizer names; each must be one of the model's."""
        return [] if self.modality is None else [self.modality]

    def transform_features(
        self, model: FusionModel, features: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Called on the features before fusion in every training step (not in evaluation);
        the default returns them unchanged."""
        return features

    def hidden_modalities(self, model: FusionModel) -> list[str]:
        """The modalities whose features :meth:`transform_features` may replace by the model's
        missing-modality fill: what trains the learned placeholders (``missing="learned"``).
        The default: none."""
        return []


class LossTerm(Regularizer):
    """A plain function ``fn(model, batch, outputs) -> Tensor`` as a :class:`Regularizer`.

    Examples:
        >>> term = LossTerm(lambda model, batch, outputs: torch.tensor(2.0))
        >>> float(term(None, {}, {})), term.named_modalities()
        (2.0, [])
    """

    def __init__(self, fn: LossFn) -> None:
        self.fn = fn

    def __call__(
        self, model: FusionModel, batch: dict[str, Any], outputs: dict[str, Any]
    ) -> torch.Tensor:
        return self.fn(model, batch, outputs)

    def __repr__(self) -> str:
        return f"LossTerm({self.fn!r})"


def as_regularizer(obj: Regularizer | LossFn) -> Regularizer:
    """``obj`` if it is a :class:`Regularizer`, a plain callable wrapped in a :class:`LossTerm`.

    Raises:
        TypeError: ``obj`` is not callable.

    Examples:
        >>> type(as_regularizer(lambda model, batch, outputs: torch.zeros(()))).__name__
        'LossTerm'
    """
    if isinstance(obj, Regularizer):
        return obj
    if not callable(obj):
        raise TypeError(
            "a regularizer must be a modfuse.regularizers.Regularizer or a function "
            f"(model, batch, outputs) -> Tensor, got {type(obj).__name__}"
        )
    return LossTerm(obj)
