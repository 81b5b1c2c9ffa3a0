"""A user's encoder, in its own file: per-channel intensity histograms of an image."""

import torch
from torch import nn

from modfuse import register_encoder


@register_encoder("user_histogram")
class HistogramEncoder(nn.Module):
    """Soft per-channel histograms, scaled by a learned weight per bin.

    Args:
        bins: Histogram bins per channel, centred on [0, 1].
        channels: Image channels.

    Shape:
        - Input: ``(B, channels, H, W)``, pixels in [0, 1]
        - Output: ``(B, channels * bins)``
    """

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
