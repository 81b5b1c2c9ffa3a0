"""COCO as context data: instances files read and checked, items selected, and each
instance served as its raw image, its object mask and its fg / bg views.

- :mod:`~modfuse.data.coco.dataset`: :class:`CocoContext` and the train / test splits;
- :mod:`~modfuse.data.coco.load`: reading an instances file (structure, file names, digest);
- :mod:`~modfuse.data.coco.select`: which annotations become items, and why others do not;
- :mod:`~modfuse.data.coco.checks`: images and segmentations checked one by one.
"""

from modfuse.data.coco.dataset import CocoContext, coco_splits
from modfuse.data.coco.load import image_files_digest, load_coco
from modfuse.data.coco.select import Selection, select_items

__all__ = [
    "CocoContext",
    "Selection",
    "coco_splits",
    "image_files_digest",
    "load_coco",
    "select_items",
]
