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
import warnings
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
from modfuse.model import FusionModel
from modfuse.views import ContextViews

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

# Imported on first use: train and evaluate pull in data loading, sweeps and reports, which
# `import modfuse` (and `modfuse list`) should not pay for.
_LAZY = {
    "Trainer": "modfuse.train",
    "robustness_sweep": "modfuse.evaluate",
    "Sweep": "modfuse.evaluate",
}

# Names this module exported before; they still work, with a warning naming their new home.
_MOVED = {
    "ATTACKS": ("modfuse._registry", "ATTACKS", "from modfuse._registry import ATTACKS"),
    "ENCODERS": ("modfuse._registry", "ENCODERS", "from modfuse._registry import ENCODERS"),
    "FUSIONS": ("modfuse._registry", "FUSIONS", "from modfuse._registry import FUSIONS"),
    "REGULARIZERS": (
        "modfuse._registry",
        "REGULARIZERS",
        "from modfuse._registry import REGULARIZERS",
    ),
    "Registry": ("modfuse._registry", "Registry", "from modfuse._registry import Registry"),
    "HeadView": (
        "modfuse.feature_head",
        "FeatureHead",
        "from modfuse.feature_head import FeatureHead",
    ),
    "list_encoders": ("modfuse._registry", "list_encoders", "modfuse._registry.ENCODERS.names()"),
    "list_fusions": ("modfuse._registry", "list_fusions", "modfuse._registry.FUSIONS.names()"),
    "list_attacks": ("modfuse._registry", "list_attacks", "modfuse._registry.ATTACKS.names()"),
    "list_regularizers": (
        "modfuse._registry",
        "list_regularizers",
        "modfuse._registry.REGULARIZERS.names()",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = vars(importlib.import_module(_LAZY[name]))[name]
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _MOVED:
        module, attr, instead = _MOVED[name]
        # Not cached in globals(): every use warns, so each caller learns the new path.
        warnings.warn(
            f"modfuse.{name} is deprecated and will be removed; use {instead}",
            DeprecationWarning,
            stacklevel=2,
        )
        return vars(importlib.import_module(module))[attr]
    raise AttributeError(f"module 'modfuse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
