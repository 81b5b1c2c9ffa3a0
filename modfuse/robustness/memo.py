"""The feature memo of a robustness sweep: a modality's features computed once per batch and
shared by every model and perturbation that would compute the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from modfuse.data.hashing import feature_identity
from modfuse.model.feature_head import FeatureHead
from modfuse.model.fusion_model import FusionModel
from modfuse.robustness.inputs import SweptModel

#: A stored feature: (encoder identity, modality, input tag). The tag is ``"clean"`` for the
#: untouched input and ``"<sweep>@<strength>"`` for an input perturbed the same way for
#: every model (a model-independent corruption, a transfer attack).
FeatureKey = tuple[str, str, Any]


class FeatureMemo:
    """Features per (encoder identity, modality, input tag) within one batch.

    Two models share a modality's features only when everything that computes them is the
    same (:func:`modfuse.data.hashing.feature_identity`: the encoder's spec, structure, every
    parameter and every buffer, persistent or not, and the views): same weights with another
    normalization (a non-persistent buffer) are other features.

    Args:
        models: The swept models, by name.
    """

    def __init__(self, models: Mapping[str, SweptModel]) -> None:
        self.hashes = {
            name: {m: feature_identity(model, m) for m in model.encoders}
            for name, model in models.items()
        }
        self.store: dict[tuple, torch.Tensor] = {}

    def logits(
        self, name: str, model: SweptModel, inputs: Mapping[str, torch.Tensor], tags: dict
    ) -> torch.Tensor:
        """Logits of ``model``; a modality whose tag is not None may reuse stored features."""
        if isinstance(model, FeatureHead):
            return model(inputs)
        return model.fuse(self.features(name, model, inputs, tags))

    def features(
        self, name: str, model: FusionModel, inputs: Mapping[str, torch.Tensor], tags: dict
    ) -> dict[str, torch.Tensor]:
        """``{modality: (B, D)}`` of ``inputs``: a modality whose tag is not None is taken
        from the store when there, else encoded and stored."""
        feats = {}
        for m, x in model.prepare(inputs).items():
            tag = tags.get(m)
            key = (self.hashes[name][m], m, tag)
            if tag is not None and key in self.store:
                feats[m] = self.store[key]
                continue
            feats[m] = model.encoders[m](x)
            if tag is not None:
                self.store[key] = feats[m]
        return feats

    def store_clean(self, name: str, features: Mapping[str, torch.Tensor]) -> None:
        """Keep the clean ``features`` ({modality: (B, D)}) of model ``name``'s encoders."""
        for m, f in features.items():
            if m in self.hashes[name]:
                self.store[(self.hashes[name][m], m, "clean")] = f

    def clean_features(self, name: str, leave: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The stored clean features of model ``name``'s modalities other than ``leave``."""
        return {
            m: f
            for (h, m, tag), f in self.store.items()
            if tag == "clean" and m not in leave and self.hashes[name].get(m) == h
        }
