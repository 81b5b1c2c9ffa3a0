"""Files: safetensors + JSON, atomic writes, legacy ``.pth`` reading, folder claims; never
pickle.

Each module imports only those below it, and none knows a model:

- :mod:`~modfuse.io.tensor_files`: tensor and JSON files (``save_tensors``,
  ``load_tensors``, shape and dtype checks);
- :mod:`~modfuse.io.file_writes`: atomic writes, and a full disk named in one paragraph;
- :mod:`~modfuse.io.legacy_weights`: legacy ``.pth`` / ``.pth.tar`` files (torchvision,
  Places365), read only through ``torch.load(weights_only=True)``, which refuses any file
  that carries code;
- :mod:`~modfuse.io.folder_lock`: a folder claimed by one process at a time.

A saved model's folder is :mod:`modfuse.model.files`; a training run's resumable state is
:mod:`modfuse.training.state`.
"""

from modfuse.io.folder_lock import FolderInUseError, claim_folder
from modfuse.io.legacy_weights import extract_state_dict, numpy_scalar_globals
from modfuse.io.tensor_files import (
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

__all__ = [
    "FileWriteError",
    "FolderInUseError",
    "PathLike",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_state_fits",
    "claim_folder",
    "extract_state_dict",
    "load_tensors",
    "numpy_scalar_globals",
    "read_json",
    "save_tensors",
    "saved_dtypes",
    "saved_shapes",
]
