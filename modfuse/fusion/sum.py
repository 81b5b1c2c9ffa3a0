"""Score-level (late) fusion: each modality predicts on its own, the scores add up."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from modfuse._registry import register_fusion
from modfuse.fusion.base import Fusion


@register_fusion("sum")
class SumFusion(Fusion):
    """``sum_m (W_m x_m + b_m)``: one affine scorer per modality, scores summed.

    Unlike ``concat``, each modality owns its bias, so ``branch(name)`` alone gives that
    modality's prediction (decision-level fusion).

    Args:
        in_dims: Feature size of each modality.
        out_dim: Output size.

    Shape:
        - Input: ``{name: (B, in_dims[name])}``
        - Output: ``(B, out_dim)``

    Examples:
        >>> fuse = SumFusion({"a": 4, "b": 3}, out_dim=2)
        >>> fuse({"a": torch.rand(5, 4), "b": torch.rand(5, 3)}).shape
        torch.Size([5, 2])
    """

    emits_logits = True

    def __init__(self, in_dims: Mapping[str, int], out_dim: int) -> None:
        super().__init__(in_dims, out_dim)
        for m, d in self.in_dims.items():
            self.branches[m] = nn.Linear(d, out_dim)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        xs = self.ordered(features)
        return torch.stack([self.branches[m](x) for m, x in zip(self.modalities, xs)]).sum(0)
