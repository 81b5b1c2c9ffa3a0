"""Safe weights and checkpoints: safetensors + JSON, atomic writes, never pickle.

One import path for everything modfuse persists; the work is done in smaller modules, each
importing only those below it:

- :mod:`modfuse.tensor_files`: tensor and JSON files (``save_tensors``, ``load_tensors``,
  shape and dtype checks), written atomically by :mod:`modfuse.file_writes`;
- :mod:`modfuse.legacy_weights`: legacy ``.pth`` / ``.pth.tar`` files (torchvision, Places365),
  read only through ``torch.load(weights_only=True)``, which refuses any file that carries code;
- :mod:`modfuse.model_files`: a saved FusionModel's folder (what ``FusionModel.save`` writes);
- :mod:`modfuse.train_state`: a training run's resumable state (:class:`TrainState`).
"""

from __future__ import annotations

from modfuse.legacy_weights import extract_state_dict, numpy_scalar_globals
from modfuse.model import FusionModel
from modfuse.model_files import MODEL_FORMAT
from modfuse.tensor_files import (
    FileWriteError,
    PathLike,
    atomic_write_bytes,
    atomic_write_json,
    check_state_fits,
    load_tensors,
    read_json,
    save_tensors,
    saved_dtypes,
    saved_shapes,
)
from modfuse.train_state import TrainState


def save_model(model: FusionModel, directory: PathLike) -> None:
    """Write a FusionModel as ``model.safetensors`` + ``config.json`` in ``directory``.

    The same as ``model.save(directory)``.

    Raises:
        ValueError: when a component was passed as a module and has no registry name to store.
    """
    model.save(directory)


def load_model(directory: PathLike) -> FusionModel:
    """Rebuild a FusionModel saved by :func:`save_model` (the same as ``FusionModel.load``).

    The tensors' names and shapes in ``model.safetensors`` are checked against the model that
    ``config.json`` describes (built first on the meta device) before any weight is allocated:
    a ``num_classes`` of 10**12 in an edited config.json fails there, not in the allocator.

    Raises:
        FileNotFoundError: a file is missing.
        KeyError: the config names a component not registered in this process.
        ValueError: the config is not a saved FusionModel's, or the weights do not fit it.

    Examples:
        >>> import tempfile
        >>> model = FusionModel({"a": {"name": "mlp", "in_dim": 3}}, num_classes=2)
        >>> folder = tempfile.mkdtemp()
        >>> save_model(model, folder)
        >>> type(load_model(folder)).__name__
        'FusionModel'
    """
    return FusionModel.load(directory)


__all__ = [
    "MODEL_FORMAT",
    "FileWriteError",
    "PathLike",
    "TrainState",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_state_fits",
    "extract_state_dict",
    "load_model",
    "load_tensors",
    "numpy_scalar_globals",
    "read_json",
    "save_model",
    "save_tensors",
    "saved_dtypes",
    "saved_shapes",
]
