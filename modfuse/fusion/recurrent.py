"""Recurrent fusion: a GRU reads the projected modality vectors in sorted-name order."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from modfuse._registry import register_fusion
from modfuse.fusion.base import Fusion


@register_fusion("recurrent")
class RecurrentFusion(Fusion):
    """Project each modality to ``hidden``, run a GRU over the M vectors, read the last state.

    Args:
        in_dims: Feature size of each modality.
        out_dim: Output size.
        hidden: GRU width.

    Shape:
        - Input: ``{name: (B, in_dims[name])}``
        - Output: ``(B, out_dim)``

    Examples:
        >>> fuse = RecurrentFusion({"a": 4, "b": 3}, out_dim=8, hidden=16)
        >>> fuse({"a": torch.rand(5, 4), "b": torch.rand(5, 3)}).shape
        torch.Size([5, 8])
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, hidden: int = 64) -> None:
        super().__init__(in_dims, out_dim)
        for m, d in self.in_dims.items():
            self.branches[m] = nn.Linear(d, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        xs = self.ordered(features)
        seq = torch.stack([self.branches[m](x) for m, x in zip(self.modalities, xs)], 1)  # (B,M,H)
        _, last = self.gru(seq)  # (1, B, H)
        return self.out(last[0])
