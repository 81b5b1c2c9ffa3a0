"""CIFAR-10 as a context dataset: the centre box is the foreground, the rest the background."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from modfuse.model.views import ContextViews


class CIFAR10Context(Dataset):
    """CIFAR-10 with ``fg`` = the centre box and ``bg`` = the image with that box filled.

    CIFAR has no instance masks. Its objects are roughly centred, so a centre box of
    ``box_fraction`` of the side stands in for the object: a coarse split that leaves some
    context in the foreground and, above all, object pixels (whatever of the object reaches
    past the box) in the background. The background view therefore partly shows the object:
    a background-only model scores above what context alone allows, and a joint model's
    robustness to foreground attacks is inflated (overstated), since its "context" branch
    still sees the object. Report the background-only accuracy next to such results (the
    CIFAR example does) and prefer COCO masks when you can.

    Args:
        root: Folder that holds (or will hold) ``cifar-10-batches-py/``.
        train: Training or test split.
        box_fraction: Side of the centre box as a fraction of the image side.
        size: Side of the fg / bg views; None keeps 32.
        download: Let torchvision download the files (off by default: no network at run time).

    Examples:
        >>> CIFAR10Context.centre_mask(8, 0.5)[0, 2:6, 2:6].all().item()
        True
    """

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        box_fraction: float = 0.5,
        size: int | None = None,
        download: bool = False,
    ) -> None:
        from torchvision.datasets import CIFAR10

        if not 0 < box_fraction <= 1:
            raise ValueError(f"box_fraction must be in (0, 1], got {box_fraction}")
        self.root = Path(root)
        try:
            self.base = CIFAR10(str(self.root), train=train, download=download)
        except RuntimeError as err:
            raise FileNotFoundError(
                f"CIFAR-10 not found under {self.root}: put the extracted python version "
                f"there as {self.root / 'cifar-10-batches-py'}/ (data_batch_1..5, test_batch, "
                "batches.meta from cifar-10-python.tar.gz), or pass download=True where the "
                f"network is allowed. torchvision said: {err}"
            ) from err
        self.train = train
        self.box_fraction = box_fraction
        self.views = ContextViews(size=size, fg_mode="box", margin=0.0, hide="box")
        self.classes = list(self.base.classes)
        self.class_to_index = {c: i for i, c in enumerate(self.classes)}
        self.mask = self.centre_mask(32, box_fraction)

    @staticmethod
    def centre_mask(side: int, fraction: float) -> torch.Tensor:
        """A ``(1, side, side)`` mask of the centre box."""
        box = max(1, round(side * fraction))
        start = (side - box) // 2
        mask = torch.zeros(1, side, side)
        mask[:, start : start + box, start : start + box] = 1
        return mask

    def __len__(self) -> int:
        return len(self.base)

    def fingerprint(self) -> str:
        h = hashlib.sha256(
            json.dumps(
                [
                    str(self.root.resolve()),
                    self.train,
                    self.box_fraction,
                    self.views.config(),
                    len(self),
                ]
            ).encode()
        )
        return h.hexdigest()[:16]

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = torch.from_numpy(self.base.data[index]).permute(2, 0, 1).float() / 255.0
        with torch.no_grad():
            views = self.views(image[None], self.mask[None])
        return {
            "image": image,
            "mask": self.mask,
            "fg": views["fg"][0],
            "bg": views["bg"][0],
            "label": int(self.base.targets[index]),
            "index": index,
        }
