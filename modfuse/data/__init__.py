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
    "ensure_synthetic_world",
    "make_loader",
    "make_synthetic_coco",
]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `python -m modfuse.data.synthetic` runs its module only once.
    if name in ("make_synthetic_coco", "ensure_synthetic_world"):
        from modfuse.data import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module 'modfuse.data' has no attribute {name!r}")
