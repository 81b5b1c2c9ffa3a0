"""Legacy ``.pth`` / ``.pth.tar`` weights read safely: ``torch.load(weights_only=True)`` only.

torch's weights-only unpickler refuses any file that carries code. This module adds what old
but harmless files need (numpy scalars, Python 2 strings) and unwraps the common checkpoint
layouts into a flat ``state_dict``. It imports nothing from modfuse.
"""

from __future__ import annotations

import contextlib
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


#: The numpy dtypes a legacy file may hold scalars of (``dtype.str``: byte order + code): the
#: metrics old training scripts stored (``best_prec1``, ``epoch``), never object, datetime,
#: string or structured dtypes.
NUMPY_SCALAR_DTYPES = frozenset(
    f"{order}{kind}{size}"
    for kind, sizes in (("f", "248"), ("i", "248"), ("u", "248"))
    for size in sizes
    for order in "<>"
) | {"|b1", "|i1", "|u1"}


class RefusedPickleValue(ValueError):
    """A legacy file's pickle asks numpy for more than a plain numeric scalar."""


class PickledNumpyDtype:
    """A numpy dtype as a legacy pickle describes it, checked before numpy sees it.

    The pickle's ``numpy.dtype(code, align, copy)`` makes one of these, never a real dtype,
    and its ``BUILD`` may set only a byte order: numpy's own ``dtype.__setstate__`` would
    accept fields, item sizes and flags (an object field and pointer flags on a float64 dtype
    turn a scalar's bytes into a heap address). :func:`numpy_scalar_from_pickle` turns it into
    a real dtype once the result is one of :data:`NUMPY_SCALAR_DTYPES`.
    """

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(code, str) or not any(d[1:] == code for d in NUMPY_SCALAR_DTYPES):
            raise RefusedPickleValue(
                f"the pickle builds numpy.dtype({code!r:.60}); expected one of the plain "
                f"numeric / bool codes {sorted({d[1:] for d in NUMPY_SCALAR_DTYPES})}"
            )
        if type(align) not in (bool, int) or align or type(copy) not in (bool, int):
            raise RefusedPickleValue(
                f"the pickle builds numpy.dtype({code!r}, align={align!r:.30}, "
                f"copy={copy!r:.30}); expected align=False and a bool copy"
            )
        self.code = code
        self.order = "|" if code.endswith("1") else "<"

    def __repr__(self) -> str:
        return f"numpy.dtype({getattr(self, 'code', None)!r})"

    def __setstate__(self, state: Any) -> None:
        # What numpy's dtype.__reduce__ writes for a plain dtype: (3, order, None, None, None,
        # -1, -1, 0); anything else sets fields, sizes or flags, which only numpy checks.
        plain = (
            isinstance(state, tuple)
            and len(state) == 8
            and type(state[0]) is int
            and state[0] == 3
            and state[1] in ("<", ">", "|")
            and all(v is None for v in state[2:5])
            and all(type(v) is int for v in state[5:])
            and list(state[5:]) == [-1, -1, 0]
        )
        if not plain:
            code = getattr(self, "code", None)  # None: made by NEWOBJ, not by numpy.dtype(...)
            raise RefusedPickleValue(
                f"the pickle sets the state of numpy.dtype({code!r}) to {state!r:.120} "
                "(BUILD with fields, item size or flags); expected only a byte order, "
                "(3, '<', None, None, None, -1, -1, 0)"
            )
        self.order = state[1]


def numpy_scalar_from_pickle(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar`` for a :class:`PickledNumpyDtype`: a plain scalar only.

    Raises:
        RefusedPickleValue: the dtype is not one of :data:`NUMPY_SCALAR_DTYPES`, or ``data`` is
            not exactly its item's bytes.
    """
    import numpy as np

    name = f"{getattr(dtype, 'order', '')}{getattr(dtype, 'code', '')}"
    if not isinstance(dtype, PickledNumpyDtype) or name not in NUMPY_SCALAR_DTYPES:
        raise RefusedPickleValue(
            f"the pickle makes a numpy scalar of {name or type(dtype).__name__!r:.60}; expected "
            f"a dtype among {sorted(NUMPY_SCALAR_DTYPES)}"
        )
    real = np.dtype(name)
    # Python 2 wrote the raw bytes as a `str`, read back as latin1 (one code point per byte).
    raw = data.encode("latin1") if isinstance(data, str) else data
    if type(raw) is not bytes or len(raw) != real.itemsize:
        raise RefusedPickleValue(
            f"the pickle makes a numpy {name} scalar from {data!r:.60}; expected "
            f"{real.itemsize} raw bytes"
        )
    return np.frombuffer(raw, dtype=real)[0]


def numpy_scalar_globals() -> list[tuple[Any, str]]:
    """What torch's weights-only unpickler needs to rebuild a numpy scalar, and nothing more.

    Old training scripts stored metrics such as ``best_prec1`` as numpy scalars, pickled as
    ``scalar(dtype, raw_bytes)`` with the dtype rebuilt by ``numpy.dtype(...)`` + ``BUILD``.
    Both names are bound to checking stand-ins (:class:`PickledNumpyDtype`,
    :func:`numpy_scalar_from_pickle`): no numpy callable and no dtype class is allowed, so a
    file can make a bool / int / float scalar of :data:`NUMPY_SCALAR_DTYPES` and nothing else.
    """
    try:
        import numpy  # noqa: F401  (a file with numpy scalars is read only where numpy is)
    except ImportError:
        return []
    return [
        (numpy_scalar_from_pickle, "numpy.core.multiarray.scalar"),  # Python 2 and numpy 1
        (numpy_scalar_from_pickle, "numpy._core.multiarray.scalar"),  # what numpy 2 writes
        # Allowed under this name only, which also lets BUILD reach its checking __setstate__.
        (PickledNumpyDtype, "numpy.dtype"),
    ]


def _scoped_safe_globals(extra: list[tuple[Any, str]]) -> contextlib.AbstractContextManager[Any]:
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
        with _scoped_safe_globals(numpy_scalar_globals()):
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
    except RefusedPickleValue as err:
        raise ValueError(
            f"refusing to load {path}: {err}. Legacy files may hold numpy scalars of plain "
            "bool / integer / float dtypes only; re-save it as safetensors, or as a plain "
            "state_dict, with a loader you trust."
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
