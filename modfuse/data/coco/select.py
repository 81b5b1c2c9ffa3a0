"""Which annotations of a COCO file become items, and which are skipped and why.

Split out of :mod:`modfuse.data.coco.dataset`: :func:`select_items` is what
``CocoContext`` runs once when it is built; every reason to skip an annotation is counted,
never silently dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modfuse.data.coco.checks import segmentation_problem

__all__ = ["Selection", "select_items"]


@dataclass
class Selection:
    """The chosen annotations (as items) and the skipped ones, counted by reason.

    ``skipped_ids`` holds the annotation ids of those skipped for a bad segmentation.
    """

    items: list[dict[str, Any]]
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_ids: dict[str, list[Any]] = field(default_factory=dict)


def select_items(
    coco: Any,
    labels: Mapping[int, int],
    image_dir: Path,
    min_area: float = 0.0,
    one_per_image: bool = True,
) -> Selection:
    """The annotations of a loaded COCO file that become items, in annotation-id order.

    Crowd annotations, unknown categories or images, bad segmentations (see
    :func:`modfuse.data.coco.checks.segmentation_problem`), objects under ``min_area`` and
    annotations whose image file is missing are skipped and counted; annotations of
    categories not in ``labels`` are left out without being counted.

    Args:
        coco: A ``pycocotools.coco.COCO`` (its ``dataset``, ``cats`` and ``imgs``).
        labels: ``{category id: label}`` of the chosen categories.
        image_dir: The folder that image ``file_name``\\ s are relative to.
        min_area: Smallest annotation ``area`` kept.
        one_per_image: Keep only each image's largest eligible annotation.

    Examples:
        >>> from types import SimpleNamespace
        >>> anns = [{"id": 1, "image_id": 5, "category_id": 1, "iscrowd": 1},
        ...         {"id": 2, "image_id": 6, "category_id": 9}]
        >>> coco = SimpleNamespace(dataset={"annotations": anns}, cats={1: {}}, imgs={})
        >>> found = select_items(coco, {1: 0}, Path("."))
        >>> found.items, dict(found.skipped)
        ([], {'crowd': 1, 'unknown_category': 1})
    """
    found = Selection(items=[])
    exists: dict[int, bool] = {}
    best: dict[int, dict[str, Any]] = {}
    for ann in sorted(coco.dataset.get("annotations", []), key=lambda a: a["id"]):
        if ann.get("iscrowd", 0):
            found.skipped["crowd"] += 1
            continue
        cid = ann.get("category_id")
        if cid not in coco.cats:
            found.skipped["unknown_category"] += 1
            continue
        if cid not in labels:
            continue  # a category not selected: not a problem, not counted
        img = coco.imgs.get(ann.get("image_id"))
        if img is None:
            found.skipped["unknown_image"] += 1
            continue
        problem = segmentation_problem(ann.get("segmentation"), img.get("height"), img.get("width"))
        if problem is not None:
            found.skipped[problem] += 1
            found.skipped_ids.setdefault(problem, []).append(ann["id"])
            continue
        if ann.get("area", 0) < min_area:
            found.skipped["small"] += 1
            continue
        iid = img["id"]
        if iid not in exists:
            exists[iid] = (image_dir / img["file_name"]).is_file()
        if not exists[iid]:
            found.skipped["missing_image_file"] += 1
            continue
        if one_per_image:
            if iid not in best or ann.get("area", 0) > best[iid].get("area", 0):
                best[iid] = ann
        else:
            found.items.append(ann)
    if one_per_image:
        found.items = [best[i] for i in sorted(best)]
    return found
