"""Tensor and JSON files: safetensors + JSON, atomic writes, never pickle.

The bottom layer of modfuse's persistence: it knows files, not models (see
:mod:`modfuse.model_files` for a saved model's folder, :mod:`modfuse.train_state` for a
training checkpoint). Legacy ``.pth`` files go through :mod:`modfuse.legacy_weights`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from modfuse.legacy_weights import load_legacy

PathLike = str | os.PathLike


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename, so no reader sees half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: PathLike) -> Any:
    """Read a JSON file, with an error that names the file when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def save_tensors(
    path: PathLike, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Save a flat dict of tensors as safetensors, atomically.

    Shared storage (tied weights, views) is copied apart, as safetensors requires.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "t.safetensors"
        >>> w = torch.arange(4.0)
        >>> save_tensors(path, {"w": w, "view": w[:2]})
        >>> load_tensors(path)["view"]
        tensor([0., 1.])
    """
    path = Path(path)
    flat = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(flat, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: PathLike) -> dict[str, torch.Tensor]:
    """Load tensors from a safetensors file or a legacy ``.pth`` / ``.pth.tar`` file.

    A legacy file is read with ``torch.load(weights_only=True)``; one that holds anything but
    tensors, plain containers and numpy scalars (e.g. code hidden in a pickle) is refused.
    Files written by Python 2 (the released Places365 ResNets) load too: their ``str`` values
    are read as latin1, as torch documents for such files.

    Returns:
        The file's top-level mapping (for legacy files it may nest, e.g. ``{"state_dict": ...}``,
        and hold metadata such as ``{"epoch": 90, "best_prec1": numpy.float64(...)}``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a safe weights file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    if path.suffix != ".safetensors":
        return load_legacy(path)
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{path} is not a valid safetensors file: {err}") from err


def saved_shapes(path: PathLike) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a safetensors file, read from its header alone.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a valid safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{path} is not a valid safetensors file: {err}") from err


def check_state_fits(
    expected: Mapping[str, tuple[int, ...]], saved: Mapping[str, tuple[int, ...]], what: str
) -> None:
    """Raise unless ``saved`` tensors have exactly the names and shapes ``expected`` lists.

    Args:
        expected: Name -> shape of the model's state (``{k: tuple(v.shape)}``).
        saved: Name -> shape in the file (see :func:`saved_shapes`).
        what: The comparison, for the message, e.g. ``"run/model/model.safetensors does not
            fit the model run/model/config.json describes"``.

    Raises:
        ValueError: a tensor is missing, unexpected or of another shape; names up to 3 of each.

    Examples:
        >>> check_state_fits({"w": (6, 128)}, {"w": (6, 128)}, "x")
        >>> check_state_fits({"w": (10**12, 128)}, {"w": (6, 128)}, "weights do not fit")
        Traceback (most recent call last):
        ...
        ValueError: weights do not fit: 'w' is (6, 128) in the file, (1000000000000, 128) expected
    """
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    differ = [k for k in expected if k in saved and tuple(saved[k]) != tuple(expected[k])]
    problems = [
        f"{k!r} is {tuple(saved[k])} in the file, {tuple(expected[k])} expected" for k in differ[:3]
    ]
    if missing:
        problems.append(f"{len(missing)} tensors missing from the file (e.g. {missing[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors the model lacks (e.g. {unexpected[:3]})")
    if problems:
        more = f" (and {len(differ) - 3} more shapes differ)" if len(differ) > 3 else ""
        raise ValueError(f"{what}: {'; '.join(problems)}{more}")
