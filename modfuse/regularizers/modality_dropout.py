"""Modality dropout: hide whole modalities from the fusion at random during training."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from modfuse._registry import register_regularizer


@register_regularizer("modality_dropout")
class ModalityDropout:
    """During training, replace each modality's features by its missing-modality fill with
    probability ``p`` per sample (zeros, or the model's learned placeholder), never hiding
    every modality of a sample. Teaches the fusion not to lean on one modality alone.

    Adds nothing to the loss; it acts through ``transform_features``.

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

    def __call__(
        self, model: nn.Module, batch: dict[str, Any], outputs: dict[str, Any]
    ) -> torch.Tensor:
        return torch.zeros(())

    def transform_features(
        self, model: nn.Module, features: dict[str, torch.Tensor]
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
            fill = (
                model.placeholders[m].to(features[m].dtype).expand_as(features[m])
                if m in getattr(model, "placeholders", {})
                else torch.zeros_like(features[m])
            )
            mask = hide[i].to(features[m].device).unsqueeze(1)  # (B, 1)
            out[m] = torch.where(mask, fill, features[m])
        return out
