"""DataLoader helpers with defaults that suit the machine, and a collate for dict samples."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


def collate_dicts(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dict samples: tensors are stacked, numbers become tensors, the rest lists.

    Example:
        >>> batch = collate_dicts([{"x": torch.zeros(2), "label": 1, "id": "a"},
        ...                        {"x": torch.ones(2), "label": 0, "id": "b"}])
        >>> batch["x"].shape, batch["label"].tolist(), batch["id"]
        (torch.Size([2, 2]), [1, 0], ['a', 'b'])
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    keys = samples[0].keys()
    out: dict[str, Any] = {}
    for k in keys:
        values = [s[k] for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"cannot batch {k!r}: samples have shapes {sorted(shapes)[:3]}; "
                    "resize them to one size (e.g. CocoContext(image_size=...))"
                )
            out[k] = torch.stack(values)
        elif isinstance(first, bool | int | float):
            out[k] = torch.tensor(values)
        else:
            out[k] = values
    return out


def default_workers() -> int:
    """Loader processes: none on a 2-core machine (they fight the model for the cores)."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(8, cores // 2)


def make_loader(
    dataset: Dataset,
    batch_size: int = 64,
    shuffle: bool = False,
    workers: int | None = None,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader for dict samples: seeded shuffling, pin_memory only with CUDA.

    Example:
        >>> data = [{"x": torch.full((2,), float(i)), "label": i} for i in range(5)]
        >>> next(iter(make_loader(data, batch_size=2)))["label"].tolist()
        [0, 1]
    """
    workers = default_workers() if workers is None else workers
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate_dicts,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
        drop_last=drop_last,
        persistent_workers=workers > 0,
    )
