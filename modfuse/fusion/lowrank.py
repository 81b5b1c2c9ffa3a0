"""Low-rank Multimodal Fusion (Liu et al. 2018, arXiv 1806.00064)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from einops import einsum
from torch import nn

from modfuse._registry import register_fusion
from modfuse.fusion.base import Fusion


class ModalityFactor(nn.Module):
    """One modality's rank-``r`` factor: ``[x; 1] -> (B, rank, out_dim)``."""

    def __init__(self, in_dim: int, rank: int, out_dim: int) -> None:
        super().__init__()
        self.weight: nn.Parameter = nn.Parameter(torch.empty(rank, in_dim + 1, out_dim))
        nn.init.xavier_normal_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)  # (B, D + 1)
        return einsum(x1, self.weight, "batch d, rank d out -> batch rank out")


@register_fusion("lowrank")
class LowRankFusion(Fusion):
    """The tensor-fusion product computed through rank-``r`` factors, linear in M.

    ``h = sum_r w_r * prod_m ([x_m; 1] W_m^(r)) + b``: the same family of functions as
    ``tensor`` fusion with a low-rank weight tensor, without forming the outer product.

    Args:
        in_dims: Feature size of each modality.
        out_dim: Output size.
        rank: Number of rank-one terms.

    Shape:
        - Input: ``{name: (B, in_dims[name])}``
        - Output: ``(B, out_dim)``

    Examples:
        >>> fuse = LowRankFusion({"a": 4, "b": 3}, out_dim=8, rank=2)
        >>> fuse({"a": torch.rand(5, 4), "b": torch.rand(5, 3)}).shape
        torch.Size([5, 8])
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, rank: int = 4) -> None:
        super().__init__(in_dims, out_dim)
        for m, d in self.in_dims.items():
            self.branches[m] = ModalityFactor(d, rank, out_dim)
        self.rank_weight = nn.Parameter(torch.full((rank,), 1.0 / rank))
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        xs = self.ordered(features)
        # One (B, rank, out_dim) factor per modality; Fusion guarantees at least one.
        factors = [self.branches[m](x) for m, x in zip(self.modalities, xs)]
        prod = factors[0]
        for f in factors[1:]:
            prod = prod * f
        # Weighted sum of the rank-one terms.
        return einsum(prod, self.rank_weight, "batch rank out, rank -> batch out") + self.bias
