"""A user's own module: registers an encoder and a fusion with the public decorators."""

import torch
from torch import nn

from modfuse import register_encoder, register_fusion
from modfuse.fusion.base import Fusion


@register_encoder("user_histogram")
class HistogramEncoder(nn.Module):
    """Per-channel intensity histograms of an image (no learned parameters but a scale)."""

    def __init__(self, bins: int = 8, channels: int = 3) -> None:
        super().__init__()
        self.bins = bins
        self.scale = nn.Parameter(torch.ones(bins * channels))
        self.out_dim = bins * channels
        self.input_shape = (channels, None, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centres = torch.linspace(0, 1, self.bins, device=x.device)
        # Soft assignment of every pixel to the bins: (B, C, H*W, bins) -> (B, C * bins).
        d = x.flatten(2).unsqueeze(-1) - centres
        return torch.exp(-(d**2) * 50).mean(2).flatten(1) * self.scale


@register_fusion("user_max")
class MaxFusion(Fusion):
    """Element-wise max over per-modality projections."""

    def __init__(self, in_dims, out_dim):
        super().__init__(in_dims, out_dim)
        for m, d in self.in_dims.items():
            self.branches[m] = nn.Linear(d, out_dim)

    def forward(self, features):
        xs = self.ordered(features)
        return torch.stack([self.branches[m](x) for m, x in zip(self.modalities, xs)]).amax(0)
