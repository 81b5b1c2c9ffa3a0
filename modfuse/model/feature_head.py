"""FeatureHead: a FusionModel seen from its features (fusion + head only).

What a sweep, an attack or a regularizer works with when the data are cached features
(:class:`modfuse.data.FeatureDataset`): its inputs are ``{modality: (B, D_m)}`` features, so
perturbations act in feature space.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import nn

from modfuse.validation import check_labels


class FusesFeatures(Protocol):
    """What a :class:`FeatureHead` needs of its model: its modalities, its classes and
    ``fuse`` (features to logits). ``FusionModel`` has them."""

    modalities: list[str]
    num_classes: int

    def fuse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor: ...


class FeatureHead(nn.Module):
    """A FusionModel's fusion and head, taking features ``{modality: (B, D_m)}``.

    It needs of the model only what :class:`FusesFeatures` names (``modalities``,
    ``num_classes``, ``fuse``), so it knows no model class.

    Implements :class:`modfuse.protocols.MultimodalModel` with identity encoders:
    ``FeatureHead(model)(features) == model.fuse(features)``.

    Examples:
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"a": {"name": "mlp", "in_dim": 3}}, num_classes=2)
        >>> head = FeatureHead(model)
        >>> feats = {"a": torch.rand(4, 128)}
        >>> torch.equal(head(feats), model.fuse(feats)), head.input_keys()
        (True, ['a'])
    """

    def __init__(self, model: FusesFeatures) -> None:
        super().__init__()
        self.model = model
        self.modalities = model.modalities
        self.encoders: dict[str, nn.Module] = {}  # features come in already encoded
        self.views = None  # nor are there raw images to make views of
        self.num_classes = model.num_classes

    def input_keys(self) -> list[str]:
        return list(self.modalities)

    def select(self, batch: Mapping[str, Any], raw: bool | None = None) -> dict[str, torch.Tensor]:
        return {m: batch[m] for m in self.modalities if m in batch}

    def encode(
        self, inputs: Mapping[str, torch.Tensor], validate: bool = True
    ) -> dict[str, torch.Tensor]:
        return dict(inputs)

    def fuse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.model.fuse(features)

    def check_labels(self, labels: torch.Tensor) -> None:
        check_labels(labels, self.model.num_classes)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.model.fuse(features)
