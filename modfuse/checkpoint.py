"""Safe weights and checkpoints: safetensors + JSON, atomic writes, never pickle.

Legacy ``.pth`` / ``.pth.tar`` files (torchvision, Places365) are read only through
``torch.load(weights_only=True)``, which refuses any file that carries code.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

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
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import scalar
    dtype_classes = dict.fromkeys(type(np.dtype(c)) for c in "?bhilqBHILQefd")
    return [
        (scalar, "numpy.core.multiarray.scalar"),  # the name Python 2 and numpy 1 wrote
        (scalar, "numpy._core.multiarray.scalar"),  # the name numpy 2 writes
        (np.dtype, "numpy.dtype"),
        *dtype_classes,
    ]


def _scoped_safe_globals(extra: list[Any]) -> contextlib.AbstractContextManager[Any]:
    # Allow-listed for this call only; entries the user allowed globally stay allowed on exit.
    serialization = torch.serialization
    if not hasattr(serialization, "safe_globals"):  # torch < 2.5: no scoped allow-list
        return contextlib.nullcontext()
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
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"{path} is not a valid safetensors file: {err}") from err
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


MODEL_FORMAT = "modfuse.FusionModel"


def _without_weight_files(spec: Any) -> Any:
    # Saved tensors replace whatever an encoder's `weights=` file held: loading needs no file.
    if isinstance(spec, Mapping):
        return {k: (None if k == "weights" else v) for k, v in spec.items()}
    return spec


def save_model(model: Any, directory: PathLike) -> None:
    """Write a FusionModel as ``model.safetensors`` + ``config.json`` in ``directory``.

    Raises:
        ValueError: when a component was passed as a module and has no registry name to store.
    """
    spec = model.spec
    unnamed = [m for m, s in spec["encoders"].items() if s is None]
    if unnamed or spec["fusion"] is None:
        what = f"encoder {unnamed[0]!r}" if unnamed else "the fusion"
        raise ValueError(
            f"cannot save: {what} was passed as a module, so config.json could not name it; "
            "register it (@register_encoder / @register_fusion) and pass its name instead"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / "model.safetensors", model.state_dict(), {"format": MODEL_FORMAT})
    spec = {**spec, "encoders": {m: _without_weight_files(s) for m, s in spec["encoders"].items()}}
    atomic_write_json(
        directory / "config.json", {"format": MODEL_FORMAT, "version": 1, "model": spec}
    )


def saved_shapes(path: PathLike) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a safetensors file, read from its header alone.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a valid safetensors file.
    """
    from safetensors import safe_open

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


def _meta_shapes(spec: Mapping[str, Any]) -> dict[str, tuple[int, ...]] | None:
    """The state shapes of the model ``spec`` describes, built on the meta device (nothing is
    allocated, however large ``num_classes`` is); None when a component cannot be built there.
    """
    from modfuse.model import FusionModel

    try:
        with torch.device("meta"):
            model = FusionModel.from_spec(spec)
    except KeyError:
        raise  # an unregistered component: load_model explains
    except Exception:  # a component whose constructor needs real tensors: checked after
        return None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_model(directory: PathLike) -> Any:
    """Rebuild a FusionModel saved by ``save_model``.

    The tensors' names and shapes in ``model.safetensors`` are checked against the model that
    ``config.json`` describes (built first on the meta device) before any weight is allocated:
    a ``num_classes`` of 10**12 in an edited config.json fails here, not in the allocator.

    Raises:
        FileNotFoundError: a file is missing.
        KeyError: the config names a component not registered in this process.
        ValueError: the config is not a saved FusionModel's, or the weights do not fit it.
    """
    from modfuse.model import FusionModel

    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found; is {directory} a saved FusionModel?")
    config = read_json(config_path)
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise ValueError(f"{config_path} is not a {MODEL_FORMAT} config")
    spec = config.get("model")
    if not isinstance(spec, dict):
        raise ValueError(f"{config_path}: expected a 'model' mapping, got {type(spec).__name__}")
    weights = directory / "model.safetensors"
    saved = saved_shapes(weights)
    what = (
        f"{weights} does not fit the model {config_path} describes (num_classes="
        f"{spec.get('num_classes')!r}, fusion_dim={spec.get('fusion_dim')!r})"
    )
    try:
        expected = _meta_shapes(spec)
        if expected is not None:
            check_state_fits(expected, saved, what)
        model = FusionModel.from_spec(spec)
    except KeyError as err:
        raise KeyError(
            f"cannot rebuild the model in {directory}: {err.args[0]}. If it names your own "
            "component, import the module that registers it before loading."
        ) from err
    except TypeError as err:
        raise ValueError(f"cannot rebuild the model in {config_path}: {err}") from err
    check_state_fits({k: tuple(v.shape) for k, v in model.state_dict().items()}, saved, what)
    model.load_state_dict(load_tensors(weights), strict=True)
    return model
