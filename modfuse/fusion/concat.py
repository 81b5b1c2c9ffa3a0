"""Concatenation fusion, written as a sum of one Linear per modality."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
from torch import nn

from modfuse._registry import register_fusion
from modfuse.fusion.base import Fusion


@register_fusion("concat")
class ConcatFusion(Fusion):
    """``W [x_1; ...; x_M] + b`` computed as ``sum_m W_m x_m + b``.

    The same function as ``nn.Linear`` on the concatenated features (sorted modality order),
    with each modality's block of weights ``W_m`` in its own branch, so that a penalty can act
    on one modality alone (the late fusion of arXiv 2011.09526).

    Args:
        in_dims: Feature size of each modality.
        out_dim: Output size (the number of classes when it feeds no head).

    Shape:
        - Input: ``{name: (B, in_dims[name])}``
        - Output: ``(B, out_dim)``

    Examples:
        >>> fuse = ConcatFusion({"fg": 4, "bg": 3}, out_dim=2)
        >>> fuse({"fg": torch.rand(5, 4), "bg": torch.rand(5, 3)}).shape
        torch.Size([5, 2])
    """

    emits_logits = True

    def __init__(self, in_dims: Mapping[str, int], out_dim: int) -> None:
        super().__init__(in_dims, out_dim)
        total = sum(self.in_dims.values())
        for m, d in self.in_dims.items():
            self.branches[m] = nn.Linear(d, out_dim, bias=False)
            # Same init scale as one nn.Linear over the concatenation (fan_in = total).
            nn.init.uniform_(cast(nn.Linear, self.branches[m]).weight, -(total**-0.5), total**-0.5)
        self.bias = nn.Parameter(torch.empty(out_dim).uniform_(-(total**-0.5), total**-0.5))

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        xs = self.ordered(features)
        out = self.bias
        for m, x in zip(self.modalities, xs):
            out = out + self.branches[m](x)
        return out

    def as_linear(self) -> nn.Linear:
        """The equivalent ``nn.Linear`` on ``torch.cat`` of the features in sorted order."""
        total = sum(self.in_dims.values())
        lin = nn.Linear(total, self.out_dim)
        with torch.no_grad():
            lin.weight.copy_(
                torch.cat([cast(nn.Linear, self.branches[m]).weight for m in self.modalities], 1)
            )
            lin.bias.copy_(self.bias)
        return lin
