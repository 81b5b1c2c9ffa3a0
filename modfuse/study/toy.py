"""A small world with three vector modalities, for examples and docs.

Class ``y`` in ``{0, 1, 2, 3}``; each modality shows ``y`` through its own noisy code:
``a`` clearly, ``b`` less clearly, ``c`` barely. A model that fuses them beats any one alone,
and an attacker on one modality hurts a fused model less than that modality's own model.
"""

from __future__ import annotations

import torch

from modfuse.data.loader import StackedDataset

__all__ = ["three_modalities"]


def three_modalities(
    n_train: int = 400, n_test: int = 200, dim: int = 4, seed: int = 0
) -> tuple[StackedDataset, StackedDataset]:
    """``(train, test)`` of ``{"a", "b", "c"}`` vectors of ``dim`` values and ``label``.

    Examples:
        >>> train, test = three_modalities(20, 10)
        >>> sorted(train[0]), len(train), len(test)
        (['a', 'b', 'c', 'label'], 20, 10)
    """
    g = torch.Generator().manual_seed(seed)
    codes = torch.randn(3, 4, dim, generator=g)  # (modality, class, dim)
    noise = (0.6, 1.0, 2.0)

    def split(n: int) -> StackedDataset:
        y = torch.randint(0, 4, (n,), generator=g)
        tensors = {
            m: codes[i][y] + noise[i] * torch.randn(n, dim, generator=g)
            for i, m in enumerate("abc")
        }
        return StackedDataset(tensors, y)

    return split(n_train), split(n_test)
