"""A small convolutional encoder, fast on a CPU: the embedded default and the test workhorse."""

from __future__ import annotations

import os

import torch
from torch import nn

from modfuse._registry import register_encoder
from modfuse.encoders.base import FreezableEncoder


@register_encoder("small_cnn")
class SmallCNN(FreezableEncoder):
    """Conv-BN-ReLU-pool stages and a global average pool.

    BatchNorm matters: without it a shallow CNN trained from scratch on the synthetic world
    stays near chance.

    Args:
        in_channels: Channels of the input image.
        width: Channels of the first stage; each later stage doubles them.
        depth: Number of stages (each halves the resolution).
        batchnorm: Put BatchNorm after each convolution.
        weights: A safetensors / ``.pth`` file of this encoder's state, or None.
        freeze: No gradients, and eval mode kept (a pretrained feature extractor).

    Shape:
        - Input: ``(B, in_channels, H, W)``
        - Output: ``(B, out_dim)`` with ``out_dim = width * 2 ** (depth - 1)``

    Examples:
        >>> enc = SmallCNN(width=8, depth=2)
        >>> enc(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 16])
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 32,
        depth: int = 3,
        batchnorm: bool = True,
        weights: str | os.PathLike | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or width < 1 or depth < 1:
            raise ValueError(
                f"in_channels, width and depth must be >= 1, got {in_channels}, {width}, {depth}"
            )
        layers: list[nn.Module] = []
        channels = in_channels
        for stage in range(depth):
            out = width * 2**stage
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=not batchnorm)]
            if batchnorm:
                layers.append(nn.BatchNorm2d(out))
            layers += [nn.ReLU(inplace=True)]
            if stage < depth - 1:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.body = nn.Sequential(*layers)
        self.out_dim = channels
        self.input_shape: tuple[int | None, ...] = (in_channels, None, None)
        self.finish(weights, freeze)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))  # (B, C, H, W) -> (B, C)
