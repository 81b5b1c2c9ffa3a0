"""What a regularizer is: ``reg(model, batch, outputs) -> scalar`` added to the loss."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn


class Regularizer(Protocol):
    """A term added to the training loss.

    ``outputs`` holds what the training step computed: ``logits`` (B, K), ``labels`` (B,),
    ``inputs`` (what the model was called on) and ``on_features`` (True when ``inputs`` are
    cached features, i.e. the model was called through ``fuse``).

    A regularizer may also define ``transform_features(model, features) -> features``, called
    on the features before fusion during training (how modality dropout works).
    """

    def __call__(
        self, model: nn.Module, batch: dict[str, Any], outputs: dict[str, Any]
    ) -> torch.Tensor: ...
