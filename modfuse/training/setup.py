"""The Trainer's setup, checked before any work: numbers, regularizers, that every trainable
part of the model is trained (unimodal heads, learned placeholders), and the model's placement."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence, Sized
from typing import Any

import torch
from torch.utils.data import Dataset

from modfuse._registry import REGULARIZERS
from modfuse.model.fusion_model import FusionModel
from modfuse.regularizers.base import Regularizer, as_regularizer


def check_numbers(
    epochs: int, batch_size: int, lr: float, weight_decay: float, adversarial_mix: float
) -> None:
    """Raise ValueError unless the Trainer's numeric settings are usable.

    Examples:
        >>> check_numbers(10, 64, 1e-3, 0.0, 0.5)
        >>> check_numbers(10, 64, float("nan"), 0.0, 0.5)
        Traceback (most recent call last):
        ...
        ValueError: lr must be a finite number > 0, got nan
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"need epochs, batch_size >= 1, got {epochs}, {batch_size}")
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
    if not 0 <= adversarial_mix <= 1:
        raise ValueError(f"adversarial_mix must be in [0, 1], got {adversarial_mix}")


def random_frozen(model: FusionModel) -> list[str]:
    """Modalities whose encoder is frozen although it was built without a weights file (and
    the model was not loaded from one): their features are those of random weights.

    Examples:
        >>> random_frozen(FusionModel({"a": {"name": "small_cnn", "freeze": True}}, num_classes=2))
        ['a']
    """
    from modfuse.encoders.base import is_frozen

    if model.weights_from is not None:
        return []
    found = []
    for m, spec in model.spec["encoders"].items():
        weights = spec.get("weights") if isinstance(spec, Mapping) else None
        if weights is None and is_frozen(model.encoders[m]):
            found.append(m)
    return found


def warn_random_frozen(model: FusionModel) -> None:
    """Warn when :func:`random_frozen` finds encoders: training then learns a head on random
    features."""
    random = random_frozen(model)
    if random:
        warnings.warn(
            f"encoders {random} are frozen but were built without weights: their features are "
            "those of random weights, and only the head learns; give each a weights file "
            "(weights=...) or leave it trainable",
            UserWarning,
            stacklevel=3,
        )


def unimodal_weight_for(model: FusionModel, weight: float | None) -> float:
    """The weight of the unimodal heads' loss: ``weight``, or 1.0 / 0.0 when None (with /
    without heads).

    Raises:
        ValueError: ``weight`` is negative or not finite, or > 0 for a model without heads.

    Examples:
        >>> mlp = {"name": "mlp", "in_dim": 3}
        >>> unimodal_weight_for(FusionModel({"a": mlp}, num_classes=2), None)
        0.0
        >>> unimodal_weight_for(FusionModel({"a": mlp}, num_classes=2, unimodal_heads=True), None)
        1.0
    """
    has_heads = len(model.unimodal) > 0
    if weight is None:
        return 1.0 if has_heads else 0.0
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"unimodal_weight must be a finite number >= 0, got {weight}")
    if weight > 0 and not has_heads:
        raise ValueError(
            f"unimodal_weight={weight} trains unimodal heads, but the model was built with "
            "unimodal_heads=False; build it with unimodal_heads=True or leave unimodal_weight "
            "at None (or 0)"
        )
    return float(weight)


def collect_regularizers(
    model: FusionModel, specs: Sequence[Any], modality_dropout: float
) -> list[Regularizer]:
    """Build the regularizers (objects, functions or registry specs) and check them against
    the model.

    Raises:
        KeyError: a regularizer names a modality the model lacks.
        ValueError: the model has learned placeholders (``missing="learned"``) that no
            regularizer trains: nothing hides those modalities, so they would stay at zero.

    Examples:
        >>> mlp = {"name": "mlp", "in_dim": 3}
        >>> model = FusionModel({"a": mlp, "b": mlp}, num_classes=2, missing="learned")
        >>> collect_regularizers(model, [], modality_dropout=0.2)
        [ModalityDropout(p=0.2, modalities=None)]
    """
    regs = [as_regularizer(REGULARIZERS.create(r)) for r in specs]
    if modality_dropout:
        regs.append(REGULARIZERS.create({"name": "modality_dropout", "p": modality_dropout}))
    for r in regs:
        for m in r.named_modalities():
            if m not in model.modalities:
                raise KeyError(
                    f"regularizer {r!r} names modality {m!r}; the model has {model.modalities}"
                )
    hidden = {m for r in regs for m in r.hidden_modalities(model)}
    untrained = [m for m in model.modalities if m in model.placeholders and m not in hidden]
    if untrained:
        raise ValueError(
            f"the model has learned placeholders (missing='learned') for {untrained}, but no "
            "regularizer hides those modalities during training, so the placeholders would "
            "never be trained. Add modality dropout over them (Trainer(..., "
            "modality_dropout=0.2), or regularizers=[ModalityDropout(p=0.2)]; "
            "train.modality_dropout in a config), or build the model with missing='zeros'"
        )
    return regs


def place_model(
    model: FusionModel, device: torch.device, channels_last: bool, compile: bool
) -> list[torch.nn.Parameter]:
    """Move ``model`` to ``device`` (channels-last, compiled encoders if asked); returns its
    trainable parameters.

    Raises:
        ValueError: the model has no trainable parameters.
    """
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        for encoder in model.encoders.values():
            # Compile the forward, not the module: state_dict keys stay as they are.
            encoder.forward = torch.compile(encoder.forward)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    return params


def data_size(data: Dataset[Any]) -> int:
    """``len(data)``; a TypeError naming the type for data without a length."""
    if not isinstance(data, Sized):
        raise TypeError(f"data must have a length (a map-style Dataset), got {type(data)}")
    return len(data)
