"""Datasets (COCO, CIFAR-10, the synthetic context world), loaders and the feature cache."""

from modfuse.data.cache import FeatureCache, FeatureDataset
from modfuse.data.cifar import CIFAR10Context
from modfuse.data.coco.dataset import CocoContext
from modfuse.data.loader import StackedDataset, collate_dicts, make_loader
from modfuse.data.split import holdout
from modfuse.data.synthetic.world import ensure_synthetic_world, make_synthetic_coco

__all__ = [
    "CIFAR10Context",
    "CocoContext",
    "FeatureCache",
    "FeatureDataset",
    "StackedDataset",
    "collate_dicts",
    "ensure_synthetic_world",
    "holdout",
    "make_loader",
    "make_synthetic_coco",
]
