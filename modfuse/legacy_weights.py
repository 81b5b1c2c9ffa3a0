"""Legacy ``.pth`` / ``.pth.tar`` weights read safely: ``torch.load(weights_only=True)`` only.

torch's weights-only unpickler refuses any file that carries code. This module adds what old
but harmless files need (numpy scalars, Python 2 strings) and unwraps the common checkpoint
layouts into a flat ``state_dict``. It imports nothing from modfuse.
"""

from __future__ import annotations

import contextlib
import importlib
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

#: The first torch release with ``torch.serialization.safe_globals`` (a scoped allow-list).
_SCOPED_ALLOW_LIST = (2, 5)


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def _numpy_scalar_globals() -> list[Any]:
    """What torch's weights-only unpickler needs to rebuild a numpy scalar, and nothing more.

    Old training scripts stored metrics such as ``best_prec1`` as numpy scalars, pickled as
    ``scalar(dtype, raw_bytes)`` with the dtype rebuilt by ``numpy.dtype(...)`` + ``BUILD``.
    Only plain bool and numeric dtypes may be built (no object or structured dtypes), and
    ``scalar`` of those only copies bytes: nothing here can run code.
    """
    try:
        import numpy as np
    except ImportError:
        return []
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")  # numpy >= 2
    except ImportError:
        multiarray = importlib.import_module("numpy.core.multiarray")
    scalar = multiarray.scalar
    dtype_classes = dict.fromkeys(type(np.dtype(c)) for c in "?bhilqBHILQefd")
    return [
        (scalar, "numpy.core.multiarray.scalar"),  # the name Python 2 and numpy 1 wrote
        (scalar, "numpy._core.multiarray.scalar"),  # the name numpy 2 writes
        (np.dtype, "numpy.dtype"),
        *dtype_classes,
    ]


def _scoped_safe_globals(extra: list[Any]) -> contextlib.AbstractContextManager[Any]:
    # Allow-listed for this call only; entries the user allowed globally stay allowed on exit.
    if _torch_version() < _SCOPED_ALLOW_LIST:  # pyproject allows torch>=2.1
        return contextlib.nullcontext()
    serialization = torch.serialization
    already = serialization.get_safe_globals()
    return serialization.safe_globals([g for g in extra if g not in already])


def _torch_load_weights_only(path: Path) -> Any:
    with warnings.catch_warnings():
        # torch warns that pickle_load_args are ignored with weights_only=True, yet it hands
        # `encoding` to its weights-only unpickler (tests/encoders/test_places365_legacy.py).
        warnings.filterwarnings("ignore", message="pickle_load_args only works")
        with _scoped_safe_globals(_numpy_scalar_globals()):
            # latin1 decodes only Python 2 `str` pickles (SHORT_BINSTRING): Python 3 writes
            # text as UTF-8 BINUNICODE and bytes via `_codecs.encode`, which ignore it. It maps
            # each byte to one code point, so it never fails, and it is the encoding numpy
            # turns a Python 2 scalar's raw bytes back with; UTF-8 (torch's default) fails on
            # such bytes, or worse, silently changes those that happen to be valid UTF-8.
            return torch.load(path, map_location="cpu", weights_only=True, encoding="latin1")


def _unpickler_reason(err: pickle.UnpicklingError) -> str:
    # torch re-raises its unpickler's error `from None` inside a long help text that suggests
    # allow-listing the refused global; keep the unpickler's own first sentence only.
    inner = err.__context__ if isinstance(err.__context__, pickle.UnpicklingError) else err
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return lines[0].split(" Please use")[0] if lines else type(err).__name__


def load_legacy(path: Path) -> dict[str, Any]:
    """Read a torch ``.pth`` / ``.pth.tar`` file with ``torch.load(weights_only=True)``.

    Args:
        path: An existing file.

    Returns:
        The file's top-level mapping (it may nest, e.g. ``{"state_dict": ...}``).

    Raises:
        ValueError: the file is no torch file, holds objects other than tensors, plain
            containers and numpy scalars, or is damaged.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "w.pth"
        >>> torch.save({"w": torch.ones(2)}, path)
        >>> load_legacy(path)
        {'w': tensor([1., 1.])}
    """
    with open(path, "rb") as f:
        head = f.read(4)
    # torch writes a zip archive (PK..) or, in its legacy format, pickles (protocol 2+: 0x80).
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise ValueError(
            f"{path} is not a PyTorch checkpoint: expected a zip archive or a pickle, the file "
            f"starts with {head!r}. Give a safetensors file, or a .pth / .pth.tar checkpoint."
        )
    try:
        obj = _torch_load_weights_only(path)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(err)
        if reason == f"Unsupported operand {pickle.BINSTRING[0]}":
            raise ValueError(
                f"cannot read {path} safely: it holds a Python 2 string of 256 bytes or more "
                "(pickle opcode BINSTRING), which torch's weights-only reader does not support; "
                "expected tensors, plain containers and short strings. Re-save it as "
                "safetensors (or as a plain state_dict) with a loader you trust."
            ) from err
        raise ValueError(
            f"refusing to load {path}: it holds objects other than tensors, plain containers "
            "and numpy scalars (a pickle that could run code). Re-save it as safetensors, or "
            f"as a plain state_dict. torch said: {reason}"
        ) from err
    except OSError:
        raise
    except Exception as err:  # a damaged file fails anywhere in torch's or numpy's readers
        raise ValueError(
            f"{path} is not a readable weights file: {type(err).__name__}: {err}"
        ) from err
    if isinstance(obj, torch.Tensor) or not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}; expected a dict of tensors")
    return dict(obj)


def extract_state_dict(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Unwrap the common checkpoint layouts into a flat ``state_dict``.

    Handles ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers (Places365, many training
    scripts) and the ``module.`` prefix that DataParallel adds.

    Examples:
        >>> extract_state_dict({"epoch": 3, "state_dict": {"module.w": torch.zeros(1)}})
        {'w': tensor([0.])}
    """
    for key in ("state_dict", "model", "model_state_dict"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"no tensors found in checkpoint; top-level keys: {sorted(obj)[:10]}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state
