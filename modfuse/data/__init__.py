"""Datasets (COCO, CIFAR-10, the synthetic context world), loaders and the feature cache."""

from typing import Any

from modfuse.data.cache import FeatureCache, FeatureDataset
from modfuse.data.cifar import CIFAR10Context
from modfuse.data.coco import CocoContext
from modfuse.data.loader import StackedDataset, collate_dicts, make_loader

__all__ = [
    "CIFAR10Context",
    "CocoContext",
    "FeatureCache",
    "FeatureDataset",
    "StackedDataset",
    "collate_dicts",
    "make_loader",
    "make_synthetic_coco",
]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `python -m modfuse.data.synthetic` runs its module only once.
    if name == "make_synthetic_coco":
        from modfuse.data.synthetic import make_synthetic_coco

        return make_synthetic_coco
    raise AttributeError(f"module 'modfuse.data' has no attribute {name!r}")
