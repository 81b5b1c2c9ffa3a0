"""DataLoader helpers with defaults that suit the machine, and a collate for dict samples."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from modfuse.data.hashing import tensor_digest


def collate_dicts(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dict samples: tensors are stacked, numbers become tensors, the rest lists.

    Examples:
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


class StackedDataset(Dataset):
    """Samples held as stacked tensors in memory: ``{key: (N, ...)}`` plus ``label`` (N,).

    Examples:
        >>> data = StackedDataset({"fg": torch.zeros(3, 2)}, torch.tensor([0, 1, 1]))
        >>> len(data), data[2]["label"], data[2]["fg"].shape
        (3, 1, torch.Size([2]))
    """

    def __init__(self, tensors: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        sizes = {k: v.shape[0] for k, v in tensors.items()}
        if any(n != labels.shape[0] for n in sizes.values()):
            raise ValueError(f"tensor counts {sizes} differ from the {labels.shape[0]} labels")
        self.tensors = dict(tensors)
        self.labels = labels

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**{k: v[i] for k, v in self.tensors.items()}, "label": int(self.labels[i])}

    def fingerprint(self) -> str:
        """A hash of every tensor held (what a FeatureCache keys on)."""
        return tensor_digest([self.tensors[k] for k in sorted(self.tensors)] + [self.labels])

    @classmethod
    def from_dataset(
        cls, dataset: Dataset, keys: Sequence[str], batch_size: int = 256, progress: bool = False
    ) -> StackedDataset:
        """Read every sample of ``dataset`` once and keep ``keys`` (and ``label``) in memory.

        Worth it when a dataset is read many times (epochs, sweeps) and decoding dominates.
        """
        from tqdm.auto import tqdm

        parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        labels = []
        for batch in tqdm(make_loader(dataset, batch_size), desc="loading", disable=not progress):
            for k in keys:
                if k not in batch:
                    raise KeyError(f"samples have no {k!r}; they have {sorted(batch)}")
                parts[k].append(torch.as_tensor(batch[k]))
            labels.append(torch.as_tensor(batch["label"]))
        return cls({k: torch.cat(v) for k, v in parts.items()}, torch.cat(labels).long())


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
    sampler: Any = None,
) -> DataLoader:
    """A DataLoader for dict samples: seeded shuffling, pin_memory only with CUDA.

    Examples:
        >>> data = [{"x": torch.full((2,), float(i)), "label": i} for i in range(5)]
        >>> next(iter(make_loader(data, batch_size=2)))["label"].tolist()
        [0, 1]
    """
    workers = default_workers() if workers is None else workers
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_dicts,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
        drop_last=drop_last,
        persistent_workers=workers > 0,
    )
