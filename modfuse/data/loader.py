"""DataLoader helpers with defaults that suit the machine, and a collate for dict samples.

Samples may hold numpy arrays and numpy scalars where they hold tensors and numbers: they are
batched into the tensors ``torch.as_tensor`` would make of them (same dtype and values), so
training, sweeps and the feature cache see exactly what tensor samples would give. A numpy
array (or a tensor) given as the dataset itself is refused, naming the dict samples expected.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from modfuse.data.hashing import tensor_digest

#: What a dataset of this library holds: one dict per item.
SAMPLES = "dict samples ({'<modality>': tensor or numpy array, ..., 'label': int})"


def as_tensor(value: Any, what: str) -> torch.Tensor:
    """``value`` as a tensor: a tensor as it is, a numeric numpy array as ``torch.as_tensor``
    makes it (same dtype and values, its own memory).

    Raises:
        TypeError: ``value`` (named ``what`` in the message) is neither, or an array of
            strings or objects.

    Examples:
        >>> as_tensor(np.arange(3, dtype=np.int64), "x")
        tensor([0, 1, 2])
    """
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray | np.generic) and np.asarray(value).dtype.kind in "biufc":
        return torch.from_numpy(np.array(value))  # a copy: writable, C-contiguous
    kind = f"a numpy array of dtype {value.dtype}" if isinstance(value, np.ndarray) else None
    raise TypeError(
        f"{what}: expected a tensor or a numeric numpy array, got "
        f"{kind or type(value).__name__}"
    )


def collate_dicts(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dict samples: tensors and numpy arrays are stacked, numbers (numpy scalars too)
    become tensors, the rest lists.

    Raises:
        TypeError: a sample is not a dict, or a key holds tensors in some samples and other
            values in others.
        ValueError: no samples, or a key's tensors differ in shape.

    Examples:
        >>> batch = collate_dicts([{"x": torch.zeros(2), "label": 1, "id": "a"},
        ...                        {"x": torch.ones(2), "label": 0, "id": "b"}])
        >>> batch["x"].shape, batch["label"].tolist(), batch["id"]
        (torch.Size([2, 2]), [1, 0], ['a', 'b'])
        >>> collate_dicts([{"x": np.zeros(2, np.float32), "label": np.int64(1)}])["x"].dtype
        torch.float32
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    for s in samples:
        if not isinstance(s, Mapping):
            array = isinstance(s, np.ndarray | torch.Tensor)
            shape = f" of shape {tuple(s.shape)}" if array else ""
            raise TypeError(
                f"expected {SAMPLES}, got a sample of type {type(s).__module__}."
                f"{type(s).__qualname__}{shape}; wrap arrays as StackedDataset({{'<modality>': "
                "torch.as_tensor(x)}, torch.as_tensor(labels))"
            )
    keys = samples[0].keys()
    out: dict[str, Any] = {}
    for k in keys:
        values = [s[k] for s in samples]
        values = [as_tensor(v, f"sample value {k!r}") if isinstance(v, np.ndarray) else v
                  for v in values]  # an array as the tensor torch.as_tensor makes of it
        first = values[0]
        if isinstance(first, torch.Tensor):
            kinds = {type(v).__name__ for v in values if not isinstance(v, torch.Tensor)}
            if kinds:
                raise TypeError(
                    f"cannot batch {k!r}: some samples hold a tensor or array, others "
                    f"{sorted(kinds)}"
                )
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"cannot batch {k!r}: samples have shapes {sorted(shapes)[:3]}; "
                    "resize them to one size (e.g. CocoContext(image_size=...))"
                )
            out[k] = torch.stack(values)
        elif isinstance(first, np.generic) and np.asarray(first).dtype.kind in "biuf":
            out[k] = as_tensor(np.array(values), f"sample value {k!r}")  # dtype kept
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
        # numpy arrays are taken as the tensors torch.as_tensor makes of them.
        tensors = {k: as_tensor(v, f"StackedDataset {k!r}") for k, v in tensors.items()}
        labels = as_tensor(labels, "StackedDataset labels")
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


def check_not_array(dataset: Any) -> None:
    """Raise when ``dataset`` is a numpy array or a tensor: its items are rows, not dict samples.

    Raises:
        TypeError: naming the dict samples expected, the array's type and shape, and how to
            wrap arrays (:class:`StackedDataset`).

    Examples:
        >>> check_not_array([{"x": torch.zeros(2), "label": 0}])
    """
    if isinstance(dataset, np.ndarray | torch.Tensor):
        raise TypeError(
            f"expected a dataset of {SAMPLES}, got a {type(dataset).__module__}."
            f"{type(dataset).__qualname__} of shape {tuple(dataset.shape)}; wrap arrays as "
            "StackedDataset({'<modality>': torch.as_tensor(x)}, torch.as_tensor(labels))"
        )


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

    Raises:
        TypeError: ``dataset`` is a numpy array or a tensor (its items are no dict samples).

    Examples:
        >>> data = [{"x": torch.full((2,), float(i)), "label": i} for i in range(5)]
        >>> next(iter(make_loader(data, batch_size=2)))["label"].tolist()
        [0, 1]
    """
    check_not_array(dataset)
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
