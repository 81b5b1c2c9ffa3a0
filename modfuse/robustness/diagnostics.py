"""Diagnostics of a fusion model beyond accuracy: how far a perturbation moves each modality's
features, and how much the model leans on each modality.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch.utils.data import Dataset

from modfuse._registry import ATTACKS
from modfuse.data.loader import make_loader
from modfuse.devices import to_model
from modfuse.model.fusion_model import FusionModel
from modfuse.modes import eval_mode
from modfuse.protocols import Fusion
from modfuse.robustness.inputs import add_views, as_swept_model, inputs_for
from modfuse.validation import labels_of


def _features(
    model: torch.nn.Module, data: Dataset, perturbation: Any, batch_size: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """Clean and perturbed features of every item, and the labels."""
    model = as_swept_model(model, data)
    clean: dict[str, list[torch.Tensor]] = {}
    pert: dict[str, list[torch.Tensor]] = {}
    labels = []
    with eval_mode(model):
        for batch in make_loader(data, batch_size):
            batch = add_views({"model": model}, to_model(batch, model))  # views from raw
            y = labels_of(batch).long()
            inputs = inputs_for(model, batch, perturbation)
            adv = perturbation(model, inputs, y) if perturbation is not None else inputs
            with torch.no_grad():
                for store, x in ((clean, inputs), (pert, adv)):
                    for m, f in model.encode(x).items():
                        store.setdefault(m, []).append(f)
            labels.append(y)
    cat = {m: torch.cat(v) for m, v in clean.items()}
    return cat, {m: torch.cat(v) for m, v in pert.items()}, torch.cat(labels)


def feature_shift(
    model: FusionModel, data: Dataset, perturbation: Any, batch_size: int = 128
) -> dict[str, dict[str, float]]:
    """How far a perturbation moves each modality's features.

    Returns:
        Per modality: ``relative_l2`` = mean of ``||f' - f|| / ||f||`` and
        ``cosine_distance`` = mean of ``1 - cos(f, f')`` over the data (0 for a modality the
        perturbation leaves alone).

    Examples:
        >>> from modfuse.attacks import GaussianNoise
        >>> from modfuse.data import FeatureDataset
        >>> data = FeatureDataset({"a": torch.randn(8, 4), "b": torch.randn(8, 4)},
        ...                       torch.zeros(8, dtype=torch.long))
        >>> mlp = {"name": "mlp", "in_dim": 4}
        >>> model = FusionModel({"a": mlp, "b": mlp}, num_classes=2)
        >>> shift = feature_shift(model, data, GaussianNoise(std=1.0, targets=("a",), seed=0))
        >>> shift["a"]["relative_l2"] > 0.5, shift["b"]["relative_l2"]
        (True, 0.0)
    """
    perturbation = ATTACKS.create(perturbation)
    clean, pert, _ = _features(model, data, perturbation, batch_size)
    out = {}
    for m in clean:
        f, g = clean[m].float(), pert[m].float()
        rel = (g - f).norm(dim=1) / f.norm(dim=1).clamp_min(1e-12)
        cos = torch.nn.functional.cosine_similarity(f, g, dim=1, eps=1e-12)
        out[m] = {"relative_l2": float(rel.mean()), "cosine_distance": float((1 - cos).mean())}
    return out


def branch_norm_share(model: FusionModel) -> dict[str, float]:
    """Each modality's share of the fusion branches' total L2 norm (sums to 1)."""
    fusion = cast(Fusion, model.fusion)  # FusionModel checks that its fusion is one
    norms = {
        m: float(
            torch.sqrt(
                sum(
                    (p.detach().pow(2).sum() for p in fusion.branch(m).parameters()),
                    torch.zeros(()),
                )
            )
        )
        for m in model.modalities
    }
    total = sum(norms.values()) or 1.0
    return {m: v / total for m, v in norms.items()}


def modality_reliance(
    model: FusionModel, data: Dataset, batch_size: int = 128
) -> dict[str, dict[str, float]]:
    """How much the model leans on each modality.

    Returns:
        Per modality: ``accuracy_drop`` (clean accuracy minus the accuracy when that
        modality's features are replaced by their mean over the data) and ``norm_share``
        (its fusion branch's share of the branches' L2 norm), plus ``clean_accuracy``.

    Examples:
        >>> from modfuse.data import FeatureDataset
        >>> x = torch.randn(64, 4); y = (x[:, 0] > 0).long()
        >>> data = FeatureDataset({"a": torch.cat([x, torch.zeros(64, 124)], 1),
        ...                        "b": torch.randn(64, 128)}, y)
        >>> mlp = {"name": "mlp", "in_dim": 4}
        >>> model = FusionModel({"a": mlp, "b": mlp}, num_classes=2)
        >>> with torch.no_grad():
        ...     _ = model.fusion.branch("a").weight.zero_()
        ...     _ = model.fusion.branch("b").weight.zero_()
        ...     model.fusion.branch("a").weight[1, 0] = 5.0
        >>> r = modality_reliance(model, data)
        >>> r["a"]["accuracy_drop"] > 0.3, r["b"]["accuracy_drop"], r["a"]["norm_share"]
        (True, 0.0, 1.0)
    """
    feats, _, labels = _features(model, data, None, batch_size)
    with eval_mode(model):
        with torch.no_grad():
            base = (model.fuse(feats).argmax(1) == labels).float().mean().item()
            shares = branch_norm_share(model)
            out: dict[str, dict[str, float]] = {}
            for m in model.modalities:
                replaced = {**feats, m: feats[m].mean(0, keepdim=True).expand_as(feats[m])}
                acc = (model.fuse(replaced).argmax(1) == labels).float().mean().item()
                out[m] = {
                    "accuracy_drop": base - acc,
                    "norm_share": shares[m],
                    "clean_accuracy": base,
                }
    return out
