"""The study tests' own world: three vector modalities of different strength, and a user
encoder registered from this module (what a user's ``imports:`` brings in)."""

from __future__ import annotations

import torch
from torch import nn

from modfuse import register_encoder
from modfuse.data import StackedDataset


@register_encoder("study_bag")
class BagEncoder(nn.Module):
    """A user's encoder: one Linear + tanh over a vector."""

    def __init__(self, in_dim: int = 6, out_dim: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.Tanh())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_data(n_train: int = 240, n_test: int = 120, seed: int = 0):
    """``a`` tells the class well, ``b`` less well, ``c`` hardly at all: 3 classes."""
    g = torch.Generator().manual_seed(1000 + seed)
    codes = torch.randn(3, 3, 6, generator=g) * 1.5  # (modality, class, dim)

    def split(n: int) -> StackedDataset:
        y = torch.randint(0, 3, (n,), generator=g)
        xs = {m: codes[i][y] + (0.8, 1.6, 4.0)[i] * torch.randn(n, 6, generator=g)
              for i, m in enumerate("abc")}
        return StackedDataset(xs, y)

    return split(n_train), split(n_test)
