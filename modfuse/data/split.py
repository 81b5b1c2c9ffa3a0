"""A validation split held out of the training data: what picks an epoch (or a threshold),
so that the test set is read only by the final evaluation.

Examples:
    >>> import torch
    >>> data = [{"x": torch.zeros(2), "label": i % 2} for i in range(10)]
    >>> train, val = holdout(data, 0.2, seed=0)
    >>> len(train), len(val), sorted(train.indices + val.indices) == list(range(10))
    (8, 2, True)
"""

from __future__ import annotations

import math
from collections.abc import Sized
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from modfuse.data.loader import StackedDataset

__all__ = ["holdout"]


def holdout(dataset: Dataset[Any], fraction: float, seed: int) -> tuple[Subset, Subset]:
    """Split ``dataset`` into (train, validation) at random, seeded.

    The validation part holds ``ceil(fraction * n)`` items (at least 1), the rest trains; the
    same dataset, fraction and seed give the same split. A stacked dataset (such as
    :class:`modfuse.data.FeatureDataset`) comes back as one of its own class per part (so that
    a head trains on cached features as on the whole), with the part's ``indices``.

    Args:
        dataset: A map-style dataset with a length.
        fraction: Share of the items held out, in (0, 1).
        seed: Seeds the permutation.

    Raises:
        ValueError: ``fraction`` is outside (0, 1), or the dataset has fewer than 2 items.
        TypeError: the dataset has no length.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"fraction must be a number in (0, 1), got {fraction!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if not isinstance(dataset, Sized):
        raise TypeError(
            f"expected a map-style dataset with a length, got {type(dataset).__name__}"
        )
    n = len(dataset)
    if n < 2:
        raise ValueError(
            f"a validation split needs at least 2 training items (1 to train, 1 to validate), "
            f"got {n}"
        )
    n_val = min(n - 1, max(1, math.ceil(fraction * n)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    train_idx, val_idx = sorted(order[n_val:]), sorted(order[:n_val])
    if isinstance(dataset, StackedDataset):
        return _features(dataset, train_idx), _features(dataset, val_idx)
    return Subset(dataset, train_idx), Subset(dataset, val_idx)


def _features(data: StackedDataset, idx: list[int]) -> Any:
    """The items ``idx`` of a stacked dataset, as one of its class (with ``indices`` kept)."""
    index = torch.tensor(idx, dtype=torch.long)
    part = type(data)({k: v[index] for k, v in data.tensors.items()}, data.labels[index])
    part.indices = idx  # type: ignore[attr-defined]  # as a Subset has them
    return part
