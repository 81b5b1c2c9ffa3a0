"""modfuse: multimodal fusion models and their robustness to attacked or missing modalities.

Examples:
    >>> import torch
    >>> from modfuse import FusionModel
    >>> model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, "concat", num_classes=4)
    >>> model({"fg": torch.rand(2, 3, 32, 32), "bg": torch.rand(2, 3, 32, 32)}).shape
    torch.Size([2, 4])
"""

from __future__ import annotations

import importlib
from typing import Any

# Importing the component packages registers the built-in encoders, fusions, attacks and
# regularizers, so that names resolve without the user importing them.
from modfuse import attacks, distributed, encoders, fusion, regularizers  # noqa: F401
from modfuse._registry import (
    register_attack,
    register_encoder,
    register_fusion,
    register_regularizer,
)
from modfuse.model import ContextViews, FusionModel

__version__ = "0.1.0"

__all__ = [
    "ContextViews",
    "FusionModel",
    "Sweep",
    "Trainer",
    "__version__",
    "register_attack",
    "register_encoder",
    "register_fusion",
    "register_regularizer",
    "robustness_sweep",
]

# Imported on first use: training and robustness pull in data loading, sweeps and reports,
# which `import modfuse` (and `modfuse list`) should not pay for.
_LAZY = {
    "Trainer": "modfuse.training",
    "robustness_sweep": "modfuse.robustness",
    "Sweep": "modfuse.robustness",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'modfuse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
