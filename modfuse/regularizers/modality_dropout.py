"""Modality dropout: hide whole modalities from the fusion at random during training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from modfuse._registry import register_regularizer
from modfuse.regularizers.base import Regularizer

if TYPE_CHECKING:
    from modfuse.model.fusion_model import FusionModel


@register_regularizer("modality_dropout")
class ModalityDropout(Regularizer):
    """During training, replace each modality's features by its missing-modality fill with
    probability ``p`` per sample (zeros, or the model's learned placeholder), never hiding
    every modality of a sample. Teaches the fusion not to lean on one modality alone.

    Adds nothing to the loss; it acts through ``transform_features``. It is what trains a
    model's learned placeholders (``missing="learned"``): the Trainer refuses such a model
    without a dropout that may hide each modality (see :meth:`hidden_modalities`).

    Args:
        p: Probability of hiding a modality for a sample.
        modalities: Which modalities may be hidden (default: all).

    Examples:
        >>> from modfuse import FusionModel
        >>> mlp = {"name": "mlp", "in_dim": 3}
        >>> model = FusionModel({"a": mlp, "b": mlp}, num_classes=2)
        >>> feats = {"a": torch.ones(1000, 128), "b": torch.ones(1000, 128)}
        >>> out = ModalityDropout(p=0.3).transform_features(model, feats)
        >>> hidden = torch.stack([(out[m] == 0).all(1) for m in "ab"])  # (M, B)
        >>> bool(hidden.all(0).any()), 0.2 < hidden.float().mean().item() < 0.35
        (False, True)
    """

    def __init__(self, p: float = 0.2, modalities: list[str] | None = None) -> None:
        if not 0 <= p < 1:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p, self.modalities = p, modalities

    def __repr__(self) -> str:
        return f"ModalityDropout(p={self.p}, modalities={self.modalities!r})"

    def __call__(
        self, model: FusionModel, batch: dict[str, Any], outputs: dict[str, Any]
    ) -> torch.Tensor:
        return torch.zeros(())

    def named_modalities(self) -> list[str]:
        return list(self.modalities or [])

    def hidden_modalities(self, model: FusionModel) -> list[str]:
        """The model's modalities this dropout may hide: none when ``p`` is 0 or the model has
        a single modality (a sample always keeps one)."""
        if self.p == 0 or len(model.modalities) < 2:
            return []
        return [m for m in model.modalities if self.modalities is None or m in self.modalities]

    def transform_features(
        self, model: FusionModel, features: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        names = [m for m in sorted(features) if self.modalities is None or m in self.modalities]
        if not names or self.p == 0:
            return features
        batch = next(iter(features.values())).shape[0]
        hide = torch.rand(len(names), batch) < self.p  # (M, B)
        if len(names) == len(features):
            # Never hide every modality of a sample: keep one, chosen at random.
            all_hidden = hide.all(0)
            keep = torch.randint(len(names), (batch,))
            hide[keep[all_hidden], all_hidden.nonzero().flatten()] = False
        out = dict(features)
        for i, m in enumerate(names):
            # The model's own fill for a missing modality: its learned placeholder, else zeros.
            # torch.where keeps the placeholder in the graph even when no sample hides it, so
            # DistributedDataParallel sees it used in every step.
            fill = (
                model.placeholders[m].to(features[m].dtype).expand_as(features[m])
                if m in model.placeholders
                else torch.zeros_like(features[m])
            )
            mask = hide[i].to(features[m].device).unsqueeze(1)  # (B, 1)
            out[m] = torch.where(mask, fill, features[m])
        return out
