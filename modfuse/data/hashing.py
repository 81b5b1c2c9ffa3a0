"""Content hashes that caches and resume files key on: tensors, modules and datasets.

A leaf module (it imports no other modfuse module but :mod:`modfuse.data.contracts`), so the
loader, the feature cache, attack keys and distributed checks can all import it without
importing one another.

Examples:
    >>> a, b = torch.zeros(3), torch.zeros(3)
    >>> tensor_digest([a]) == tensor_digest([b]) != tensor_digest([b.double()])
    True
    >>> module_hash(torch.nn.Linear(2, 2)) == module_hash(torch.nn.Linear(2, 2))  # new weights
    False
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence, Sized
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from modfuse.data.contracts import Fingerprinted

__all__ = ["dataset_fingerprint", "module_hash", "tensor_digest"]


def _hash_tensor(h: Any, t: torch.Tensor) -> None:
    """Feed a tensor's dtype, shape and bytes to the hash ``h``."""
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(-1).view(torch.uint8).numpy().tobytes())


def module_hash(module: nn.Module, spec: Any = None) -> str:
    """A hash of a module's spec and every tensor in its state (weights and buffers).

    Args:
        module: Any module; its ``state_dict()`` is hashed name by name.
        spec: A JSON-able description hashed with it (what the module was built from).

    Examples:
        >>> lin = torch.nn.Linear(2, 2)
        >>> module_hash(lin) == module_hash(lin) != module_hash(lin, spec={"name": "linear"})
        True
    """
    h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        _hash_tensor(h, t)
    return h.hexdigest()[:16]


def tensor_digest(tensors: Sequence[torch.Tensor]) -> str:
    """A hash of tensors' dtypes, shapes and bytes (16 hex digits).

    Examples:
        >>> tensor_digest([torch.zeros(2)]) == tensor_digest([torch.zeros(1, 2)])
        False
    """
    h = hashlib.sha256()
    for t in tensors:
        _hash_tensor(h, t)
    return h.hexdigest()[:16]


def dataset_fingerprint(dataset: Dataset | Sequence[Any]) -> str:
    """The dataset's own ``fingerprint()`` where it has one, else a hash of its contents.

    Without a ``fingerprint()`` (:class:`modfuse.data.contracts.Fingerprinted`), the length,
    the type and 16 samples spread over the dataset are hashed: datasets that differ only
    elsewhere would collide, so give yours one.

    Args:
        dataset: A map-style dataset (with a length) of dict or tuple samples.

    Raises:
        TypeError: the dataset has no length (an iterable-style dataset).

    Examples:
        >>> data = [{"x": torch.zeros(2), "label": 0}, {"x": torch.ones(2), "label": 1}]
        >>> dataset_fingerprint(data) == dataset_fingerprint(data[::-1])
        False
    """
    if isinstance(dataset, Fingerprinted):
        return str(dataset.fingerprint())
    if not isinstance(dataset, Sized):
        raise TypeError(
            "expected a map-style dataset with a length (or a fingerprint() method), "
            f"got {type(dataset).__name__}"
        )
    n = len(dataset)
    picks = sorted({round(i * (n - 1) / 15) for i in range(16)}) if n else []
    parts = []
    for i in picks:
        sample = dataset[i]
        items = sample.items() if isinstance(sample, Mapping) else enumerate(sample)
        parts += [
            torch.as_tensor(v)
            for _, v in sorted(items, key=lambda kv: str(kv[0]))
            if isinstance(v, torch.Tensor | int | float)
        ]
    return tensor_digest([torch.tensor([n]), *parts]) + f"-{type(dataset).__qualname__}"
