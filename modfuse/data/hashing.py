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

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from modfuse.data.contracts import CacheableModel, Fingerprinted, HasEncoders, ViewMaker

__all__ = [
    "UnhashableSampleError",
    "dataset_fingerprint",
    "feature_identity",
    "module_hash",
    "tensor_digest",
]


#: Sample values hashed by their repr (which keeps 1, 1.0, True and '1' apart, floats exact).
SCALARS = (np.generic, bool, int, float, complex, str, bytes)


class UnhashableSampleError(TypeError):
    """A dataset without ``fingerprint()`` holds a value its samples cannot be hashed by."""


def _hash_tensor(h: Any, t: torch.Tensor) -> None:
    """Feed a tensor's dtype, shape and bytes to the hash ``h``."""
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(-1).view(torch.uint8).numpy())  # the buffer itself: no copy of the bytes


def module_hash(module: nn.Module, spec: Any = None) -> str:
    """A hash of a module's spec, its structure and every parameter and buffer it holds.

    Non-persistent buffers count too: they are not in ``state_dict()`` but change the output
    all the same (a :class:`modfuse.encoders.base.PixelNormalize`'s mean and std). So does each
    submodule's class, which weights alone do not show (a ReLU where a GELU was).

    Args:
        module: Any module.
        spec: A JSON-able description hashed with it (what the module was built from).

    Examples:
        >>> lin = torch.nn.Linear(2, 2)
        >>> module_hash(lin) == module_hash(lin) != module_hash(lin, spec={"name": "linear"})
        True
    """
    h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for name, sub in module.named_modules(remove_duplicate=False):
        h.update(f"module {name} {type(sub).__module__}.{type(sub).__qualname__}\n".encode())
    tensors = [
        *(("parameter", n, t) for n, t in module.named_parameters(remove_duplicate=False)),
        *(("buffer", n, t) for n, t in module.named_buffers(remove_duplicate=False)),
    ]
    for kind, name, t in sorted(tensors, key=lambda x: (x[0], x[1])):
        h.update(f"{kind} {name}\n".encode())
        _hash_tensor(h, t)
    return h.hexdigest()[:16]


def feature_identity(model: nn.Module, modality: str) -> str:
    """A hash of everything in ``model`` that turns a sample into ``modality``'s features.

    The views' settings (they make the encoder's input from a raw image), the encoder's spec
    (``model.spec["encoders"][modality]`` where the model has a spec) and the encoder itself
    (:func:`module_hash`: its structure, every parameter and every buffer, persistent or not).
    Two models give the same identity only when they compute the same features, so features
    may be shared between them (a feature cache, a sweep's in-batch memo).

    Args:
        model: A model with ``encoders`` and ``views``
            (:class:`modfuse.data.contracts.HasEncoders`: a FusionModel).
        modality: One of its modalities.

    Raises:
        TypeError: ``model`` has no ``encoders`` and ``views``.
        KeyError: ``model`` has no encoder for ``modality``.

    Examples:
        >>> from modfuse import FusionModel
        >>> a = FusionModel({"x": {"name": "mlp", "in_dim": 3}}, num_classes=2)
        >>> feature_identity(a, "x") == feature_identity(a, "x")
        True
    """
    if not isinstance(model, HasEncoders):
        raise TypeError(
            "expected a model with encoders and views (modfuse.data.contracts.HasEncoders, "
            f"e.g. a FusionModel), got {type(model).__name__}"
        )
    if modality not in model.encoders:
        raise KeyError(
            f"modality {modality!r} has no encoder; the model has {sorted(model.encoders)}"
        )
    spec = model.spec["encoders"].get(modality) if isinstance(model, CacheableModel) else None
    views = model.views.config() if isinstance(model.views, ViewMaker) else None
    return module_hash(model.encoders[modality], {"encoder": spec, "views": views})


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


def _hash_value(h: Any, value: Any, where: str) -> None:
    """Feed one sample value to ``h``: tensors and arrays by bytes, the rest by value.

    Raises:
        UnhashableSampleError: a value of another kind (an image object, a custom class).
    """
    if isinstance(value, torch.Tensor):
        h.update(b"T")
        _hash_tensor(h, value)
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        h.update(f"A{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).view(np.uint8))
    elif value is None or isinstance(value, SCALARS):
        h.update(f"V{type(value).__name__}:{value!r}\n".encode())
    elif isinstance(value, Mapping):
        h.update(f"D{len(value)}\n".encode())
        for k in sorted(value, key=repr):
            h.update(f"K{k!r}\n".encode())
            _hash_value(h, value[k], f"{where}[{k!r}]")
    elif isinstance(value, tuple | list):
        h.update(f"L{type(value).__name__}{len(value)}\n".encode())
        for i, v in enumerate(value):
            _hash_value(h, v, f"{where}[{i}]")
    else:
        raise UnhashableSampleError(
            f"cannot hash {where}: expected tensors, numeric numpy arrays, numbers, strings or "
            f"containers of them, got {type(value).__module__}.{type(value).__qualname__}; give "
            "the dataset a fingerprint() method returning a string that changes whenever its "
            "samples do (modfuse.data.contracts.Fingerprinted), e.g. a hash of its files and "
            "settings"
        )


def _fingerprinted(dataset: Any) -> bool:
    """Whether ``dataset`` has a ``fingerprint()``, or is a Subset of one that has."""
    if isinstance(dataset, Subset):
        return _fingerprinted(dataset.dataset)
    return isinstance(dataset, Fingerprinted)


def dataset_fingerprint(dataset: Dataset | Sequence[Any]) -> str:
    """The dataset's own ``fingerprint()`` where it has one, else a hash of every sample.

    A :class:`torch.utils.data.Subset` of a dataset with a ``fingerprint()`` is keyed by that
    fingerprint and its indices, without reading an item.
    Without a ``fingerprint()`` (:class:`modfuse.data.contracts.Fingerprinted`), the type, the
    length and every value of every sample (keys, tensors and arrays by their bytes, numbers
    and strings by value) are hashed: one full read of the dataset (0.4 s for 10,000
    in-memory samples of 3x48x48 float32 images, 276 MB, on 2 CPU cores). A dataset that
    loads or decodes its items pays that read each time it is keyed: give it a
    ``fingerprint()`` (a hash of its files and settings) instead.

    Args:
        dataset: A map-style dataset (with a length) of dict or tuple samples.

    Raises:
        TypeError: the dataset has no length (an iterable-style dataset).
        UnhashableSampleError: a sample holds a value that cannot be hashed (an image object);
            the message says how to give the dataset a fingerprint.

    Examples:
        >>> data = [{"x": torch.zeros(2), "label": 0}, {"x": torch.ones(2), "label": 1}]
        >>> dataset_fingerprint(data) == dataset_fingerprint(data[::-1])
        False
    """
    if isinstance(dataset, Fingerprinted):
        return str(dataset.fingerprint())
    if _fingerprinted(dataset) and isinstance(dataset, Subset):
        # A part of a fingerprinted dataset (a split): its items are never read.
        h = hashlib.sha256(f"Subset of {dataset_fingerprint(dataset.dataset)}\n".encode())
        _hash_tensor(h, torch.as_tensor(list(dataset.indices), dtype=torch.int64))
        return h.hexdigest()[:16] + "-Subset"
    if not isinstance(dataset, Sized):
        raise TypeError(
            "expected a map-style dataset with a length (or a fingerprint() method), "
            f"got {type(dataset).__name__}"
        )
    n = len(dataset)
    h = hashlib.sha256(f"{type(dataset).__module__}.{type(dataset).__qualname__} {n}\n".encode())
    for i in range(n):
        h.update(f"item {i}\n".encode())
        _hash_value(h, dataset[i], f"item {i}")
    return h.hexdigest()[:16] + f"-{type(dataset).__qualname__}"
