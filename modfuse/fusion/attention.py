"""Attention fusion: a small transformer encoder over modality tokens and a fusion token."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from einops import rearrange, repeat
from torch import nn

from modfuse._registry import register_fusion
from modfuse.fusion.base import Fusion


@register_fusion("attention")
class AttentionFusion(Fusion):
    """Each modality becomes a token (projection + modality embedding); a learned fusion token
    attends to them through a transformer encoder, and its output is the fused vector.

    Args:
        in_dims: Feature size of each modality.
        out_dim: Output size.
        d_model: Token width.
        heads: Attention heads (must divide ``d_model``).
        layers: Transformer encoder layers.
        dropout: Dropout inside the transformer (0 keeps the fusion deterministic).

    Shape:
        - Input: ``{name: (B, in_dims[name])}``
        - Output: ``(B, out_dim)``

    Examples:
        >>> fuse = AttentionFusion({"a": 4, "b": 3}, out_dim=8, d_model=16, heads=2)
        >>> fuse({"a": torch.rand(5, 4), "b": torch.rand(5, 3)}).shape
        torch.Size([5, 8])
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        d_model: int = 64,
        heads: int = 4,
        layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_dims, out_dim)
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        for m, d in self.in_dims.items():
            self.branches[m] = nn.Linear(d, d_model)
        self.modality_embedding = nn.Parameter(torch.randn(len(self.modalities), d_model) * 0.02)
        self.fusion_token = nn.Parameter(torch.randn(d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(d_model, out_dim)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        xs = self.ordered(features)
        projected = [self.branches[m](x) for m, x in zip(self.modalities, xs)]
        tokens = rearrange(projected, "m batch d -> batch m d") + self.modality_embedding
        cls = repeat(self.fusion_token, "d -> batch 1 d", batch=tokens.shape[0])
        encoded = self.encoder(torch.cat([cls, tokens], dim=1))  # (B, 1 + M, d_model)
        return self.out(encoded[:, 0])  # the fusion token's output
