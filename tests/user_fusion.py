"""A user's fusion, in its own file: element-wise max over per-modality projections."""

from collections.abc import Mapping

import torch
from torch import nn

from modfuse import register_fusion
from modfuse.fusion.base import Fusion


@register_fusion("user_max")
class MaxFusion(Fusion):
    """``max_m W_m x_m``: each modality's projection, the largest entry wins.

    Args:
        in_dims: Feature size of each modality.
        out_dim: Output size.

    Shape:
        - Input: ``{name: (B, in_dims[name])}``
        - Output: ``(B, out_dim)``
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int) -> None:
        super().__init__(in_dims, out_dim)
        for m, d in self.in_dims.items():
            self.branches[m] = nn.Linear(d, out_dim)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        xs = self.ordered(features)  # sorted modality order; checks keys and shapes
        projected = [self.branches[m](x) for m, x in zip(self.modalities, xs)]
        return torch.stack(projected).amax(0)  # (M, B, out_dim) -> (B, out_dim)
