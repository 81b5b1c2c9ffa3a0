"""COCO context dataset: objects cut out with their instance masks, and their scenes."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from modfuse.data.coco.checks import read_image, segmentation_problem, segmentation_warning
from modfuse.data.coco.load import image_files_digest, load_coco
from modfuse.data.coco.select import select_items
from modfuse.model.views import ContextViews

#: What ``CocoContext(hide_instances=...)`` paints over besides the item itself.
HIDE_INSTANCES = ("category", "item", "all")
#: Bumped when reading or selection changes what a dataset yields (part of ``fingerprint``).
READER_VERSION = 3


def coco_splits(root: str | os.PathLike, **kwargs: Any) -> tuple[CocoContext, CocoContext]:
    """The ``train2017`` and ``val2017`` splits of a COCO 2017 layout folder.

    ``kwargs`` go to :class:`CocoContext` (categories, views, image_size...).
    """
    root = Path(root)
    train, val = (
        CocoContext(root / f"{s}2017", root / "annotations" / f"instances_{s}2017.json", **kwargs)
        for s in ("train", "val")
    )
    return train, val


class CocoContext(Dataset):
    """Foreground/background items from a COCO-format folder (COCO 2017 or the synthetic world).

    Each item is an object instance (or the largest eligible one per image) as a dict:
    ``image`` (3, H, W) in [0, 1], ``mask`` (1, H, W), ``fg`` and ``bg`` (through the same
    :class:`modfuse.ContextViews` a model uses, so dataset and attacks agree), ``label`` (the
    contiguous class index), ``category_id``, ``image_id``, ``ann_id`` and ``scene`` (the
    image-level scene label of the synthetic world, -1 where there is none).

    Masks are decoded by pycocotools: polygons, uncompressed and compressed RLE. Crowd
    annotations are never items. Per-item problems (a missing image file, an annotation naming
    an unknown image or category) are skipped and counted in ``skipped``, never given a label.
    Bad segmentations are found when the dataset is built (see
    :data:`modfuse.data.coco.checks.SEGMENTATION_PROBLEMS`: wrong type, polygons of fewer than
    3 points, polygon points more than one image size outside the image, an RLE of another
    size than its image, a mask that would be empty), skipped, counted in ``skipped`` under
    that reason, their ids kept in ``skipped_ids``, with a warning naming the annotation file
    and the first ids. A mask that still decodes empty raises a ValueError naming the image
    file and the annotation id. A file that is not COCO's layout (two images with one id, a
    ``null`` entry, a missing ``image_id``, an ``area`` that is no number, a ``file_name``
    that is absolute or climbs out of ``image_dir``...) is a ValueError naming the file, the
    entry and the field (:func:`modfuse.data.coco.load.check_structure`).

    Real images often hold several instances of the item's class; the background view would
    show the others and give the class away. ``hide_instances`` paints them over in the
    returned ``image`` itself (so the ``bg`` view and attacks on the raw image see the same
    scene), each by the views' own hide rule (its square box for ``hide="box"``, its mask
    for ``"mask"``) in the views' fill colour: ``"category"`` (default) every other
    annotation of the item's category in that image, crowd regions included (they are object
    pixels too); ``"all"`` every other annotation of any category; ``"item"`` none (only the
    item is hidden, by the views). Other annotations with a bad segmentation cannot be
    painted and are left as they are. The item's own mask pixels are never painted, even where
    another instance's box covers them, so the ``fg`` view keeps the whole item (with
    ``fg_mode="box"`` the crop shows the painted neighbours as fill). Painting happens on the
    decoded image, before the resize to ``image_size``, so no pixel of a hidden instance
    enters the resize's averaging.

    Args:
        image_dir: Folder of images, e.g. ``coco/train2017``.
        ann_file: Instances JSON, e.g. ``coco/annotations/instances_train2017.json``.
        categories: Category names or ids to keep (None: all); they define the label order.
        min_area: Smallest object area in pixels (of the original image) to keep.
        size: Side of the fg / bg views (ignored when ``views`` is given).
        one_per_image: One item per image (its largest eligible object) or one per object.
        image_size: Resize the raw image and mask to this square side (needed to batch real
            COCO images of different sizes); None keeps them as they are.
        views: The front end that makes ``fg`` / ``bg``; default ``ContextViews(size=size)``.
        hide_instances: Other instances painted over in the image: ``"category"`` (those of
            the item's category), ``"all"`` (every other annotation) or ``"item"`` (none).
        hash_images: :meth:`fingerprint` hashes the bytes of every image file used (reads them
            all); by default it hashes their sizes and modification times.

    Examples:
        >>> import tempfile
        >>> from modfuse.data.synthetic import make_synthetic_coco
        >>> root = make_synthetic_coco(tempfile.mkdtemp(), n_train=12, n_test=0, size=32)
        >>> data = CocoContext(root / "train2017", root / "annotations/instances_train2017.json",
        ...                    size=24)
        >>> item = data[0]
        >>> len(data), item["fg"].shape, data.classes[item["label"]]
        (12, torch.Size([3, 24, 24]), 'ball')
    """

    def __init__(
        self,
        image_dir: str | os.PathLike,
        ann_file: str | os.PathLike,
        categories: Sequence[str | int] | None = None,
        min_area: float = 0.0,
        size: int | None = 64,
        one_per_image: bool = True,
        image_size: int | None = None,
        views: ContextViews | None = None,
        hide_instances: Literal["category", "item", "all"] = "category",
        hash_images: bool = False,
    ) -> None:
        if hide_instances not in HIDE_INSTANCES:
            raise ValueError(
                f"hide_instances must be one of {list(HIDE_INSTANCES)}, got {hide_instances!r}"
            )
        self.hide_instances = hide_instances
        self.hash_images = hash_images
        self.image_dir = Path(image_dir)
        self.ann_file = Path(ann_file)
        if not self.ann_file.is_file():
            raise FileNotFoundError(f"annotation file {self.ann_file} not found")
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder {self.image_dir} not found")
        self.coco = load_coco(self.ann_file)
        self.views = views or ContextViews(size=size)
        self.image_size = image_size
        self.min_area = min_area
        self.one_per_image = one_per_image

        cats = sorted(self.coco.cats.values(), key=lambda c: c["id"])
        by_name = {c["name"]: c["id"] for c in cats}
        if categories is None:
            chosen = [c["id"] for c in cats]
        else:
            chosen = []
            for c in categories:
                cid = by_name.get(c) if isinstance(c, str) else c
                if cid is None or cid not in self.coco.cats:
                    raise KeyError(
                        f"category {c!r} not in {self.ann_file.name}; "
                        f"it has {sorted(by_name)} (ids {sorted(self.coco.cats)})"
                    )
                chosen.append(cid)
        self.category_ids = chosen
        self.classes = [self.coco.cats[cid]["name"] for cid in chosen]
        self.class_to_index = {name: i for i, name in enumerate(self.classes)}
        self._cat_to_label = {cid: i for i, cid in enumerate(chosen)}

        found = select_items(self.coco, self._cat_to_label, self.image_dir, min_area, one_per_image)
        self.items = found.items
        self.skipped: Counter[str] = found.skipped
        self.skipped_ids: dict[str, list[Any]] = found.skipped_ids
        if not self.items:
            raise ValueError(
                f"no objects left in {self.ann_file.name} for categories {self.classes} with "
                f"min_area={min_area}; skipped: {dict(self.skipped) or 'none'}"
            )
        if self.skipped["missing_image_file"]:
            warnings.warn(
                f"{self.skipped['missing_image_file']} annotations point to image files missing "
                f"from {self.image_dir}; skipped (see dataset.skipped)",
                stacklevel=2,
            )
        message = segmentation_warning(self.ann_file, self.skipped_ids)
        if message:
            warnings.warn(message, stacklevel=2)

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self, hash_images: bool | None = None) -> str:
        """A hash of what determines the items: annotations, folder, image files and settings.

        Each image file that holds an item enters with its size and ``st_mtime_ns``, so a
        rewritten image changes the fingerprint (and a feature cache recomputes). A rewrite
        that keeps size and modification time is found only with ``hash_images``.

        Args:
            hash_images: Hash the image files' bytes too; None takes the dataset's setting.
        """
        if hash_images is None:
            hash_images = self.hash_images
        h = hashlib.sha256()
        h.update(hashlib.sha256(self.ann_file.read_bytes()).digest())
        used = sorted({ann["image_id"] for ann in self.items})
        paths = [self.image_dir / self.coco.imgs[i]["file_name"] for i in used]
        h.update(image_files_digest(paths, contents=hash_images).encode())
        settings = [
            str(self.image_dir.resolve()),
            self.category_ids,
            self.min_area,
            self.one_per_image,
            self.image_size,
            self.views.config(),
            self.hide_instances,
            READER_VERSION,
        ]
        h.update(json.dumps(settings, sort_keys=True).encode())
        return h.hexdigest()[:16]

    def raw(self, index: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """The image ``(3, H, W)``, its object mask ``(1, H, W)`` and the annotation."""
        ann = self.items[index]
        img = self.coco.imgs[ann["image_id"]]
        image = read_image(self.image_dir / img["file_name"])
        h, w = image.shape[-2:]
        if (img.get("height"), img.get("width")) not in ((h, w), (None, None)):
            raise ValueError(
                f"image {img['file_name']} is {h}x{w} but its annotation says "
                f"{img.get('height')}x{img.get('width')}"
            )
        ann = {**ann}
        mask = self._decode({**ann, "image_id": img["id"]})  # (1, H, W)
        if not mask.any():
            raise ValueError(
                f"annotation {ann['id']} of image file {self.image_dir / img['file_name']}: its "
                f"mask decodes empty in the {h}x{w} image; expected at least one object pixel"
            )
        image = self._hide_others(image, mask, ann)
        if self.image_size is not None and (h, w) != (self.image_size, self.image_size):
            s = (self.image_size, self.image_size)
            image = F.interpolate(image[None], s, mode="bilinear", antialias=True)[0].clamp(0, 1)
            mask = (F.interpolate(mask[None], s, mode="bilinear")[0] > 0.5).float()
        return image, mask, ann

    def _decode(self, ann: dict[str, Any]) -> torch.Tensor:
        """One annotation's mask as ``(1, H, W)`` float."""
        try:
            with warnings.catch_warnings():
                # pycocotools' own NumPy 2 deprecation notice, once per decoded mask.
                warnings.simplefilter("ignore", DeprecationWarning)
                decoded = self.coco.annToMask(ann)
        except Exception as err:  # pycocotools raises bare Exception, TypeError, IndexError...
            img = self.coco.imgs[ann["image_id"]]
            raise ValueError(
                f"annotation {ann['id']} of image file {self.image_dir / img['file_name']}: "
                f"pycocotools cannot decode its segmentation: {err!r}"
            ) from err
        return torch.from_numpy(decoded).float()[None]

    def _hide_others(
        self, image: torch.Tensor, mask: torch.Tensor, ann: dict[str, Any]
    ) -> torch.Tensor:
        """``image`` with the other instances that ``hide_instances`` names filled."""
        if self.hide_instances == "item":
            return image
        cats = [ann["category_id"]] if self.hide_instances == "category" else []
        # iscrowd=None: crowd annotations too. Only this image's masks are decoded.
        ids = self.coco.getAnnIds(imgIds=ann["image_id"], catIds=cats, iscrowd=None)
        hidden = torch.zeros_like(mask, dtype=torch.bool)  # (1, H, W)
        img = self.coco.imgs[ann["image_id"]]
        for other in self.coco.loadAnns([i for i in ids if i != ann["id"]]):
            if segmentation_problem(other.get("segmentation"), img["height"], img["width"]):
                continue  # no mask of this image can be decoded from it, or it is empty
            region = self.views.region(self._decode(other)[None])[0]  # (1, H, W)
            hidden |= region > 0.5
        hidden &= mask <= 0.5  # the item's own pixels stay: the fg view shows all of it
        if not hidden.any():
            return image
        fill = self.views.fill_value(image[None])[0]  # (C, 1, 1)
        return torch.where(hidden, fill, image)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask, ann = self.raw(index)
        with torch.no_grad():
            views = self.views(image[None], mask[None])
        img = self.coco.imgs[ann["image_id"]]
        return {
            "image": image,
            "mask": mask,
            "fg": views["fg"][0],
            "bg": views["bg"][0],
            "label": self._cat_to_label[ann["category_id"]],
            "category_id": ann["category_id"],
            "image_id": ann["image_id"],
            "ann_id": ann["id"],
            "scene": int(img.get("scene", -1)),
        }
