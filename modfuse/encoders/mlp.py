"""A multilayer perceptron for modalities that arrive as vectors (tabular data, features)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from modfuse._registry import register_encoder
from modfuse.encoders.base import FreezableEncoder


@register_encoder("mlp")
class MLPEncoder(FreezableEncoder):
    """Linear-ReLU layers over a vector input.

    Args:
        in_dim: Size of the input vector.
        hidden: Sizes of the hidden layers; the last one is ``out_dim``. Empty means identity.
        dropout: Dropout between layers.
        weights: A safetensors / ``.pth`` file of this encoder's state, or None.
        freeze: No gradients, and eval mode kept.

    Shape:
        - Input: ``(B, in_dim)``
        - Output: ``(B, out_dim)``

    Examples:
        >>> enc = MLPEncoder(in_dim=10, hidden=(32, 16))
        >>> enc(torch.rand(4, 10)).shape
        torch.Size([4, 16])
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
        weights: str | os.PathLike | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        if in_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"in_dim and hidden sizes must be >= 1, got {in_dim}, {list(hidden)}")
        layers: list[nn.Module] = []
        dim = in_dim
        for i, h in enumerate(hidden):
            layers.append(nn.Linear(dim, h))
            if i < len(hidden) - 1:
                layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
            dim = h
        self.net = nn.Sequential(*layers)
        self.out_dim = dim
        self.input_shape: tuple[int | None, ...] = (in_dim,)
        self.finish(weights, freeze)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
