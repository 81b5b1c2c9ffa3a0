"""Tensor Fusion Network (Zadeh et al. 2017, arXiv 1707.07250)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from einops import einsum, rearrange
from torch import nn

from modfuse._registry import register_fusion
from modfuse.fusion.base import Fusion


@register_fusion("tensor")
class TensorFusion(Fusion):
    """Outer product of the ``[z_m; 1]`` vectors of all modalities, then a Linear.

    Each modality is first projected to ``rank_dim`` (the paper's modality subnetworks); the
    appended 1 keeps the unimodal and bimodal terms inside the product. The product has
    ``(rank_dim + 1) ** M`` entries, so keep ``rank_dim`` small for many modalities.

    Args:
        in_dims: Feature size of each modality.
        out_dim: Output size.
        rank_dim: Size of each modality's projection before the outer product.

    Shape:
        - Input: ``{name: (B, in_dims[name])}``
        - Output: ``(B, out_dim)``

    Examples:
        >>> fuse = TensorFusion({"a": 4, "b": 3}, out_dim=8, rank_dim=4)
        >>> fuse({"a": torch.rand(5, 4), "b": torch.rand(5, 3)}).shape
        torch.Size([5, 8])
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, rank_dim: int = 16) -> None:
        super().__init__(in_dims, out_dim)
        for m, d in self.in_dims.items():
            self.branches[m] = nn.Sequential(nn.Linear(d, rank_dim), nn.ReLU())
        self.out = nn.Linear((rank_dim + 1) ** len(self.modalities), out_dim)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        xs = self.ordered(features)
        prod = None
        for m, x in zip(self.modalities, xs):
            z = self.branches[m](x)
            z = torch.cat([z, z.new_ones(z.shape[0], 1)], dim=1)  # (B, r + 1)
            if prod is None:
                prod = z
                continue
            # Outer product per sample, flattened: the product so far (P entries) times z.
            outer = einsum(prod, z, "batch p, batch r -> batch p r")
            prod = rearrange(outer, "batch p r -> batch (p r)")
        return self.out(prod)
