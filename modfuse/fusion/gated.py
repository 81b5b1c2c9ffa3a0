"""Gated Multimodal Unit (Arevalo et al. 2017, arXiv 1702.01992), for any number of inputs."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from einops import rearrange
from torch import nn

from modfuse._registry import register_fusion
from modfuse.fusion.base import Fusion


@register_fusion("gated")
class GatedFusion(Fusion):
    """``h = sum_m z_m * tanh(W_m x_m)`` with gates ``z = softmax_m(G [x_1; ...; x_M])``.

    With two modalities the softmax over two gates is the paper's sigmoid gate ``z`` and
    ``1 - z``; the softmax extends it to M modalities.

    Args:
        in_dims: Feature size of each modality.
        out_dim: Size of the fused representation.

    Shape:
        - Input: ``{name: (B, in_dims[name])}``
        - Output: ``(B, out_dim)``

    Examples:
        >>> fuse = GatedFusion({"a": 4, "b": 3}, out_dim=8)
        >>> fuse({"a": torch.rand(5, 4), "b": torch.rand(5, 3)}).shape
        torch.Size([5, 8])
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int) -> None:
        super().__init__(in_dims, out_dim)
        for m, d in self.in_dims.items():
            self.branches[m] = nn.Linear(d, out_dim, bias=False)
        self.gate = nn.Linear(sum(self.in_dims.values()), out_dim * len(self.modalities))

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        xs = self.ordered(features)
        hs = [torch.tanh(self.branches[m](x)) for m, x in zip(self.modalities, xs)]
        h = rearrange(hs, "m batch out -> batch m out")
        # The gate emits M blocks of out_dim weights; a softmax over m mixes the modalities.
        gate = rearrange(self.gate(torch.cat(xs, dim=1)), "batch (m out) -> batch m out", m=len(hs))
        return (gate.softmax(dim=1) * h).sum(dim=1)
