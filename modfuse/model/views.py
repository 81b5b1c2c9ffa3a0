"""ContextViews: a raw image and an object mask -> a foreground view and a background view.

The views are differentiable in the image, so an attacker can work on the raw image in front of
them (``targets=("image",)``: both views move, the realistic threat model) or on the foreground
view alone (``targets=("fg",)``: the threat model of arXiv 2011.09526, where the context is out
of the attacker's reach).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

#: Per-channel mean colour of ImageNet, the "mean" fill: a constant, so the fill carries no
#: information about (and no gradient from) the pixels it hides.
IMAGENET_MEAN = (0.485, 0.456, 0.406)


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for low-precision tensors (resampling kernels lack them), else their own."""
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


class ContextViews(nn.Module):
    """Split ``{"image", "mask"}`` into ``{"fg": object crop, "bg": scene without the object}``.

    ``fg``: the object's bounding box (made square, widened by ``margin``) cropped and resized
    to ``size``; with ``fg_mode="mask"`` the pixels outside the mask are replaced by the fill,
    with ``"box"`` the whole box is kept. ``bg``: the full image resized to ``size`` with the
    object hidden under the fill: its square crop box (``hide="box"``, the default) or its
    mask pixels (``hide="mask"``). The box is the default because a mask-shaped hole keeps the
    object's silhouette in the background view, which then predicts the class by shape.

    Args:
        size: Side of both output views; None keeps the input's height and width.
        fg_mode: ``"mask"`` (cut the object out with its mask) or ``"box"`` (its box).
        fill: ``"mean"`` (ImageNet mean colour) or ``"zero"``.
        margin: Fraction of the box side added around the object in the crop.
        hide: What the background view hides: ``"box"`` (the crop box) or ``"mask"``.

    Shape:
        - image: ``(B, C, H, W)``, mask: ``(B, 1, H, W)`` with values in [0, 1]
        - fg, bg: ``(B, C, size, size)``

    Examples:
        >>> views = ContextViews(size=32)
        >>> image = torch.rand(2, 3, 48, 48)
        >>> mask = torch.zeros(2, 1, 48, 48); mask[:, :, 10:30, 12:28] = 1
        >>> out = views(image, mask)
        >>> out["fg"].shape, out["bg"].shape
        (torch.Size([2, 3, 32, 32]), torch.Size([2, 3, 32, 32]))
    """

    #: The keys the views read (a raw image and its object mask) and the keys they make.
    input_keys: tuple[str, str] = ("image", "mask")
    output_keys: tuple[str, str] = ("fg", "bg")

    def __init__(
        self,
        size: int | None = None,
        fg_mode: Literal["mask", "box"] = "mask",
        fill: Literal["mean", "zero"] = "mean",
        margin: float = 0.1,
        hide: Literal["box", "mask"] = "box",
    ) -> None:
        super().__init__()
        if fg_mode not in ("mask", "box"):
            raise ValueError(f"fg_mode must be 'mask' or 'box', got {fg_mode!r}")
        if fill not in ("mean", "zero"):
            raise ValueError(f"fill must be 'mean' or 'zero', got {fill!r}")
        if hide not in ("box", "mask"):
            raise ValueError(f"hide must be 'box' or 'mask', got {hide!r}")
        if size is not None and size < 1:
            raise ValueError(f"size must be a positive int or None, got {size}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.size = size
        self.fg_mode = fg_mode
        self.fill = fill
        self.margin = margin
        self.hide = hide

    def config(self) -> dict:
        """The constructor arguments, for saving with a model."""
        return {
            "size": self.size,
            "fg_mode": self.fg_mode,
            "fill": self.fill,
            "margin": self.margin,
            "hide": self.hide,
        }

    def fill_value(self, image: torch.Tensor) -> torch.Tensor:
        """The fill colour as ``(1, C, 1, 1)``."""
        c = image.shape[1]
        if self.fill == "zero" or c != 3:
            return image.new_zeros(1, c, 1, 1)
        return torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)

    def boxes(self, mask: torch.Tensor) -> torch.Tensor:
        """Square crop boxes around each mask, ``(B, 5)`` float32 rows of
        ``(index, x1, y1, x2, y2)`` in pixel-edge coordinates. An empty mask gives the whole
        image.

        Always float32, whatever the mask's dtype: bfloat16 has 8 bits of mantissa, so it would
        round pixel coordinates above 256 (and batch indices above 256) to even numbers. One
        vectorized pass, no per-sample host synchronisation.
        """
        b, _, h, w = mask.shape
        m = mask.detach()[:, 0]  # (B, H, W)
        # "any pixel > 0.5" as a max: the same answer, and boolean any() is slow on the CPU.
        rows, cols = m.amax(dim=2) > 0.5, m.amax(dim=1) > 0.5  # (B, H), (B, W)
        ys = torch.arange(h, dtype=torch.float32, device=mask.device)
        xs = torch.arange(w, dtype=torch.float32, device=mask.device)
        inf = torch.tensor(float("inf"), device=mask.device)
        # Pixel i covers [i, i + 1): the box spans first..last + 1.
        y1 = torch.where(rows, ys, inf).amin(dim=1)
        y2 = torch.where(rows, ys, -inf).amax(dim=1) + 1
        x1 = torch.where(cols, xs, inf).amin(dim=1)
        x2 = torch.where(cols, xs, -inf).amax(dim=1) + 1
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        half = torch.maximum(x2 - x1, y2 - y1) * (1 + self.margin) / 2
        square = torch.stack([cx - half, cy - half, cx + half, cy + half], dim=1)  # (B, 4)
        whole = torch.tensor([0.0, 0.0, float(w), float(h)], device=mask.device)
        present = rows.any(dim=1, keepdim=True)  # (B, 1)
        square = torch.where(present, square, whole)
        index = torch.arange(b, dtype=torch.float32, device=mask.device)[:, None]
        return torch.cat([index, square], dim=1)  # (B, 5)

    def region(self, mask: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        """The area hidden from the background view, ``(B, 1, H, W)``.

        ``hide="mask"``: the object's own pixels; ``hide="box"``: the square crop box around
        it (so the hole's outline does not give away the object's silhouette). ``boxes``:
        ``self.boxes(mask)`` when the caller has it already.
        """
        if self.hide == "mask":
            return mask
        b, _, h, w = mask.shape
        if boxes is None:
            boxes = self.boxes(mask)
        boxes = boxes[:, 1:]  # (B, 4) float32: x1, y1, x2, y2
        xs = torch.arange(w, dtype=torch.float32, device=mask.device) + 0.5  # pixel centres
        ys = torch.arange(h, dtype=torch.float32, device=mask.device) + 0.5
        inside_x = (xs >= boxes[:, 0:1]) & (xs <= boxes[:, 2:3])  # (B, W)
        inside_y = (ys >= boxes[:, 1:2]) & (ys <= boxes[:, 3:4])  # (B, H)
        empty = mask.detach().flatten(1).amax(1) <= 0.5  # an empty mask hides nothing
        region = inside_y[:, :, None] & inside_x[:, None, :] & ~empty[:, None, None]
        return region[:, None].to(mask.dtype)

    def crop(self, x: torch.Tensor, boxes: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        """Crop ``boxes`` out of ``x`` and resize; outside the image reads as ``background``.

        Low-precision inputs (bfloat16, float16) are cropped in float32, with float32 boxes,
        and the crop cast back: roi_align needs the two in one dtype, and on the CPU has no
        bfloat16 kernel.
        """
        h, w = x.shape[-2:]
        out_size = (self.size, self.size) if self.size else (h, w)
        work = _work_dtype(x)
        # roi_align samples zeros outside the image: crop (x - background) and add it back.
        # Adaptive sampling: one sample per output pixel at 1:1, more when shrinking (antialias).
        shifted = (x - background).to(work)
        crop = roi_align(shifted, boxes.to(work), out_size, sampling_ratio=-1, aligned=True)
        return crop.to(x.dtype) + background

    def fg_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The mask in the coordinates of the foreground view, ``(B, 1, size, size)``."""
        return self.crop(mask, self.boxes(mask), mask.new_zeros(1, 1, 1, 1))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        if image.dim() != 4 or mask.dim() != 4 or mask.shape[1] != 1:
            raise ValueError(
                f"expected image (B, C, H, W) and mask (B, 1, H, W), "
                f"got {tuple(image.shape)} and {tuple(mask.shape)}"
            )
        if image.shape[0] != mask.shape[0] or image.shape[-2:] != mask.shape[-2:]:
            raise ValueError(
                f"image {tuple(image.shape)} and mask {tuple(mask.shape)} differ in batch or size"
            )
        fill = self.fill_value(image)
        mask = mask.to(image.dtype)
        boxes = self.boxes(mask)  # (B, 5), once for both views
        hidden = self.region(mask, boxes)
        fg_source = image * mask + fill * (1 - mask) if self.fg_mode == "mask" else image
        fg = self.crop(fg_source, boxes, fill)
        bg = image * (1 - hidden) + fill * hidden
        if self.size is not None and bg.shape[-2:] != (self.size, self.size):
            bg = F.interpolate(
                bg.to(_work_dtype(bg)),  # no antialiased bfloat16 kernel on the CPU
                size=(self.size, self.size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            ).to(bg.dtype)
        return {"fg": fg, "bg": bg}
