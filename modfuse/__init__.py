"""modfuse: multimodal fusion models and their robustness to attacked or missing modalities.

Examples:
    >>> import torch
    >>> from modfuse import FusionModel
    >>> model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, "concat", num_classes=4)
    >>> model({"fg": torch.rand(2, 3, 32, 32), "bg": torch.rand(2, 3, 32, 32)}).shape
    torch.Size([2, 4])
"""

from modfuse import attacks, distributed, encoders, fusion, regularizers  # noqa: F401
from modfuse._registry import (
    ATTACKS,
    ENCODERS,
    FUSIONS,
    REGULARIZERS,
    Registry,
    list_attacks,
    list_encoders,
    list_fusions,
    list_regularizers,
    register_attack,
    register_encoder,
    register_fusion,
    register_regularizer,
)
from modfuse.model import FusionModel, HeadView
from modfuse.views import ContextViews

__version__ = "0.1.0"

__all__ = [
    "ATTACKS",
    "ENCODERS",
    "FUSIONS",
    "REGULARIZERS",
    "ContextViews",
    "FusionModel",
    "HeadView",
    "Registry",
    "list_attacks",
    "list_encoders",
    "list_fusions",
    "list_regularizers",
    "register_attack",
    "register_encoder",
    "register_fusion",
    "register_regularizer",
]
