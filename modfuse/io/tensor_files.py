"""Tensor and JSON files: safetensors + JSON, atomic writes, never pickle.

The bottom layer of modfuse's persistence: it knows files, not models (see
:mod:`modfuse.model.files` for a saved model's folder, :mod:`modfuse.training.state` for a
training checkpoint). Legacy ``.pth`` files go through :mod:`modfuse.io.legacy_weights`; every
file is written through :mod:`modfuse.io.file_writes` (atomic, umask-respecting, a full disk
named as such).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from modfuse.io.file_writes import (
    FileWriteError,
    PathLike,
    atomic_write_bytes,
    atomic_write_json,
    published_or_removed,
    temp_beside,
)
from modfuse.io.legacy_weights import load_legacy


def read_json(path: PathLike) -> Any:
    """Read a JSON file, with an error that names the file when it is not valid JSON.

    Raises:
        ValueError: the file is not UTF-8 JSON, or nests deeper than Python can parse.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: not UTF-8 text ({err})") from err
    except RecursionError as err:  # json's parser recurses once per nested list or object
        raise ValueError(
            f"{path} is not a modfuse file: its JSON nests deeper than Python's recursion "
            f"limit ({err}); a file modfuse writes nests a few levels"
        ) from err


def _safetensors_errno(err: SafetensorError) -> int | None:
    """The OS error code of a safetensors I/O failure, None when it is no I/O failure."""
    text = str(err)
    found = re.search(r"os error (\d+)|code: (\d+)", text)
    if found:
        return int(found.group(1) or found.group(2))
    if "No space left" in text or "StorageFull" in text:
        return errno.ENOSPC
    return errno.EIO if "I/O error" in text or "IoError" in text else None


def save_tensors(
    path: PathLike, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Save a flat dict of tensors as safetensors, atomically.

    Shared storage (tied weights, views) is copied apart, as safetensors requires. The file
    gets the mode open() would give it (``0o666`` less the user's umask).

    Raises:
        FileWriteError: the write failed (e.g. the disk is full); ``path`` is unchanged.

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
    fd, tmp = temp_beside(path)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)  # 0o666 less the umask, as the kernel made it
    os.close(fd)
    with published_or_removed(path, tmp):
        try:
            save_file(flat, str(tmp), metadata=metadata)
        except SafetensorError as err:
            code = _safetensors_errno(err)
            if code is None:  # not an I/O failure: a tensor or metadata safetensors refuses
                raise
            raise FileWriteError(path, code, f"{os.strerror(code)}; safetensors: {err}") from err
        # safetensors >= 0.5 writes through its own 0600 temp file, renamed over ours.
        os.chmod(tmp, mode)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the bytes reach the disk before the name does
        finally:
            os.close(fd)
        os.replace(tmp, path)


def load_tensors(path: PathLike) -> dict[str, torch.Tensor]:
    """Load tensors from a safetensors file or a legacy ``.pth`` / ``.pth.tar`` file.

    A legacy file is read with ``torch.load(weights_only=True)``; one that holds anything but
    tensors, plain containers and numpy scalars of plain bool / int / float dtypes (e.g. code
    hidden in a pickle, or a numpy dtype built with fields or flags) is refused.
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


#: safetensors' dtype names and the torch dtypes they hold (those this torch has).
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, attr)
    for name, attr in {
        "BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16",
        "U32": "uint32", "I32": "int32", "U64": "uint64", "I64": "int64", "F16": "float16",
        "BF16": "bfloat16", "F32": "float32", "F64": "float64", "C64": "complex64",
        "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    }.items()
    if hasattr(torch, attr)
}


def _header(path: PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    # Name -> (shape, safetensors dtype name), from the header alone: no tensor is read.
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            slices = {k: f.get_slice(k) for k in f.keys()}
            return {k: (tuple(s.get_shape()), str(s.get_dtype())) for k, s in slices.items()}
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{path} is not a valid safetensors file: {err}") from err


def saved_shapes(path: PathLike) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a safetensors file, read from its header alone.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a valid safetensors file.
    """
    return {k: shape for k, (shape, _) in _header(path).items()}


def saved_dtypes(path: PathLike) -> dict[str, torch.dtype | str]:
    """The dtype of every tensor in a safetensors file, read from its header alone.

    A dtype this torch lacks stays safetensors' name for it (e.g. ``"F8_E8M0"``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a valid safetensors file.
    """
    return {k: SAFETENSORS_DTYPES.get(d, d) for k, (_, d) in _header(path).items()}


def check_state_fits(
    expected: Mapping[str, tuple[int, ...]],
    saved: Mapping[str, tuple[int, ...]],
    what: str,
    *,
    expected_dtypes: Mapping[str, torch.dtype] | None = None,
    saved_dtypes: Mapping[str, torch.dtype | str] | None = None,
) -> None:
    """Raise unless ``saved`` tensors have exactly the names, shapes and dtypes expected.

    load_state_dict would copy a tensor of another dtype into the model, converting its values
    (the bits of a float32 weight relabelled int32 become a weight of -1115285632.0): a dtype
    that differs is refused here, like a shape.

    Args:
        expected: Name -> shape of the model's state (``{k: tuple(v.shape)}``).
        saved: Name -> shape in the file (see :func:`saved_shapes`).
        what: The comparison, for the message, e.g. ``"run/model/model.safetensors does not
            fit the model run/model/config.json describes"``.
        expected_dtypes: Name -> dtype of the model's state; dtypes are compared for the
            names both this and ``saved_dtypes`` hold.
        saved_dtypes: Name -> dtype in the file (see :func:`saved_dtypes`).

    Raises:
        ValueError: a tensor is missing, unexpected, or of another shape or dtype; names up to
            3 of each.

    Examples:
        >>> check_state_fits({"w": (6, 128)}, {"w": (6, 128)}, "x")
        >>> check_state_fits({"w": (10**12, 128)}, {"w": (6, 128)}, "weights do not fit")
        Traceback (most recent call last):
        ...
        ValueError: weights do not fit: 'w' is (6, 128) in the file, (1000000000000, 128) expected
        >>> check_state_fits({"w": (2,)}, {"w": (2,)}, "weights do not fit",
        ...     expected_dtypes={"w": torch.float32}, saved_dtypes={"w": torch.int32})
        Traceback (most recent call last):
        ...
        ValueError: weights do not fit: 'w' is torch.int32 in the file, torch.float32 expected
    """
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    differ = [k for k in expected if k in saved and tuple(saved[k]) != tuple(expected[k])]
    problems = [
        f"{k!r} is {tuple(saved[k])} in the file, {tuple(expected[k])} expected" for k in differ[:3]
    ]
    typed: Mapping[str, torch.dtype] = expected_dtypes or {}
    found: Mapping[str, torch.dtype | str] = saved_dtypes or {}
    retyped = [k for k in typed if k in found and k not in differ and found[k] != typed[k]]
    problems += [f"{k!r} is {found[k]} in the file, {typed[k]} expected" for k in retyped[:3]]
    if missing:
        problems.append(f"{len(missing)} tensors missing from the file (e.g. {missing[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors the model lacks (e.g. {unexpected[:3]})")
    if problems:
        more = [f"{len(differ) - 3} more shapes differ"] if len(differ) > 3 else []
        more += [f"{len(retyped) - 3} more dtypes differ"] if len(retyped) > 3 else []
        tail = f" (and {', '.join(more)})" if more else ""
        raise ValueError(f"{what}: {'; '.join(problems)}{tail}")


__all__ = [
    "FileWriteError",
    "PathLike",
    "SAFETENSORS_DTYPES",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_state_fits",
    "load_tensors",
    "read_json",
    "save_tensors",
    "saved_dtypes",
    "saved_shapes",
]
