"""Rendering of one synthetic image: a procedural scene, optional clutter behind the object,
the object, an optional occluder in front of it and optional pixel noise.

:class:`Difficulty` holds the knobs that make the world harder; its defaults draw the same
images (the same bytes) as the generator did before the knobs existed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from modfuse.data.synthetic.shapes import (
    CATALOGUE,
    CLASSES,
    PALETTE,
    RLE_SHAPES,
    polygon,
    round_mask,
    texture,
)

SCENES = ("water", "sky", "grass", "road", "indoor", "sand")


def _scene(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural scene ``(size, size, 3)`` in [0, 1]."""
    y, x = np.mgrid[0:size, 0:size] / size
    noise = rng.normal(0, 1, (size, size))
    if name == "water":
        f, p = rng.uniform(10, 20), rng.uniform(0, 2 * math.pi)
        w = 0.5 + 0.5 * np.sin(f * y * 2 * math.pi / 3 + p + 0.8 * np.sin(6 * x))
        img = np.stack([0.05 + 0.1 * w, 0.25 + 0.2 * w, 0.55 + 0.3 * w], -1)
    elif name == "sky":
        img = np.stack([0.45 + 0.4 * y, 0.65 + 0.3 * y, 0.95 + 0.0 * y], -1)
        for _ in range(rng.integers(1, 4)):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 0.7), rng.uniform(0.1, 0.25)
            cloud = np.exp(-(((x - cx) ** 2 + 0.5 * (y - cy) ** 2) / r**2) * 3)[..., None]
            img = img * (1 - 0.8 * cloud) + 0.98 * 0.8 * cloud
    elif name == "grass":
        blades = np.sin(x * size * rng.uniform(1.5, 2.5) + 3 * noise.cumsum(0) / size)
        g = 0.45 + 0.1 * blades + 0.08 * noise
        img = np.stack([0.15 + 0.05 * noise, g, 0.1 + 0.03 * noise], -1)
    elif name == "road":
        img = np.repeat((0.35 + 0.05 * noise)[..., None], 3, -1)
        lane = np.abs(x - rng.uniform(0.3, 0.7)) < 0.03
        dashes = (np.floor(y * 6 + rng.uniform(0, 1)) % 2) == 0
        img[lane & dashes] = (0.95, 0.85, 0.2)
    elif name == "indoor":
        horizon = rng.uniform(0.55, 0.75)
        wall = np.array([0.85, 0.78, 0.62]) + 0.02 * noise[..., None]
        floor = np.array([0.45, 0.28, 0.15]) + 0.05 * noise[..., None] * np.sin(40 * x)[..., None]
        img = np.where((y < horizon)[..., None], wall, floor)
        wx, wy = rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.3)
        window = (x > wx) & (x < wx + 0.3) & (y > wy) & (y < wy + 0.2)
        img[window] = (0.6, 0.8, 0.95)
    elif name == "sand":
        p = rng.uniform(0, 2 * math.pi)
        dunes = 0.5 + 0.5 * np.sin((x + 2 * y) * rng.uniform(4, 8) + p)
        img = np.stack([0.85 + 0.08 * dunes, 0.72 + 0.08 * dunes, 0.45 + 0.05 * dunes], -1)
        img = img + 0.03 * noise[..., None]
    else:
        raise KeyError(f"unknown scene {name!r}; scenes: {list(SCENES)}")
    return np.clip(img, 0, 1)


@dataclass(frozen=True)
class Difficulty:
    """What makes the objects hard to recognise (see :func:`modfuse.data.make_synthetic_coco`).

    Args:
        scale: Range of the object's radius as a fraction of the image side (uniform).
        aspect: Aspect jitter: the object's own axes are stretched by ``e^a`` and ``e^-a``,
            ``a`` uniform in ``[-aspect, aspect]`` (0: none).
        occlusion: Largest fraction of the object's pixels hidden by a bar in front of it; each
            object's fraction is uniform in ``[0, occlusion]`` (0: no bar).
        clutter: Distractor objects painted behind the object (scenery, not annotated).
        noise: Standard deviation of Gaussian pixel noise over the whole image, in [0, 1]
            pixel units (0: none).

    Examples:
        >>> Difficulty(occlusion=0.3).is_default()
        False
    """

    scale: tuple[float, float] = (0.2, 0.3)
    aspect: float = 0.0
    occlusion: float = 0.0
    clutter: int = 0
    noise: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.scale)
        object.__setattr__(self, "scale", (lo, hi))
        # The object must fit inside the image with a pixel to spare, whatever its stretch.
        if not (0 < lo <= hi and hi * math.exp(self.aspect) < 0.48):
            raise ValueError(
                "scale must be (lo, hi) with 0 < lo <= hi and hi * e^aspect < 0.48 (the "
                f"object fits in the image), got scale={self.scale}, aspect={self.aspect}"
            )
        if not 0 <= self.aspect <= 1:
            raise ValueError(f"aspect must be in [0, 1], got {self.aspect}")
        if not 0 <= self.occlusion <= 0.9:
            raise ValueError(
                f"occlusion must be in [0, 0.9] (some of it visible), got {self.occlusion}"
            )
        if not (isinstance(self.clutter, int) and self.clutter >= 0):
            raise ValueError(f"clutter must be an int >= 0, got {self.clutter!r}")
        if not 0 <= self.noise <= 1:
            raise ValueError(f"noise must be in [0, 1], got {self.noise}")

    def is_default(self) -> bool:
        return self == Difficulty()


def _shape(
    shape: str, cx: float, cy: float, r: float, angle: float, stretch: float, size: int
) -> tuple[np.ndarray, dict, object]:
    """The shape's mask, its compressed RLE, and its stored segmentation (polygon or RLE)."""
    if shape in RLE_SHAPES:
        mask = round_mask(shape, cx, cy, r, size, angle, stretch)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return mask, rle, {"size": [size, size], "counts": rle["counts"].decode("ascii")}
    poly = polygon(shape, cx, cy, r, angle, stretch)
    # Paint exactly the pixels that pycocotools will decode from the stored polygon.
    rle = mask_utils.merge(mask_utils.frPyObjects([poly], size, size))
    return mask_utils.decode(rle).astype(bool), rle, [poly]


def _paint_clutter(
    img: np.ndarray, names: Sequence[str], d: Difficulty, rng: np.random.Generator
) -> np.ndarray:
    """``d.clutter`` distractors drawn from ``names``, anywhere (partly outside too)."""
    size = img.shape[0]
    for _ in range(d.clutter):
        shape, kind = CATALOGUE[names[int(rng.integers(len(names)))]]
        r = rng.uniform(0.5 * d.scale[0], d.scale[1]) * size
        cx, cy = rng.uniform(0, size, size=2)
        angle = rng.uniform(0, 2 * math.pi)
        mask, _, _ = _shape(shape, cx, cy, r, angle, 1.0, size)
        colour = PALETTE[rng.integers(len(PALETTE))]
        img = np.where(mask[..., None], texture(kind, colour, size, rng, cx, cy, r), img)
    return img


def _occluder(
    mask: np.ndarray, cx: float, cy: float, reach: float, d: Difficulty, rng: np.random.Generator
) -> np.ndarray:
    """A bar in front of the object that hides about a drawn fraction of ``mask``.

    The bar's near edge is a straight line across the object, placed at the quantile of the
    object's pixels along a random direction, so the hidden fraction is the drawn one (up to
    ties on the line) whatever the shape; it reaches past the object's far side.
    """
    size = mask.shape[0]
    frac, theta = rng.uniform(0, d.occlusion), rng.uniform(0, 2 * math.pi)
    extra, half = rng.uniform(0.2, 0.6) * reach, rng.uniform(1.1, 1.5) * reach
    y, x = np.mgrid[0:size, 0:size] + 0.5
    along = (x - cx) * math.cos(theta) + (y - cy) * math.sin(theta)
    across = -(x - cx) * math.sin(theta) + (y - cy) * math.cos(theta)
    inside = np.sort(along[mask])
    # Hide k pixels, always leaving at least one visible.
    k = min(int(round(frac * inside.size)), inside.size - 1)
    if k == 0:
        return np.zeros_like(mask)
    edge = inside[inside.size - k]
    return (along >= edge) & (along <= inside[-1] + extra) & (np.abs(across) <= half)


def render_sample(
    class_index: int | str,
    scene_index: int,
    size: int,
    rng: np.random.Generator,
    difficulty: Difficulty | None = None,
    distractors: Sequence[str] = (),
) -> tuple[np.ndarray, dict]:
    """One image ``(size, size, 3)`` uint8 and its annotation's segmentation, bbox and area.

    The annotation is of the object's visible pixels (COCO's convention): under an occluder
    its mask loses the hidden pixels (and is then stored as RLE, whatever the shape), and its
    bbox and area are the visible part's. Clutter is never annotated.

    Args:
        class_index: A class name of the catalogue, or an index into :data:`CLASSES`.
        scene_index: Index into :data:`SCENES`.
        size: Image side in pixels.
        rng: The only source of randomness: the same state draws the same image.
        difficulty: The knobs; None: :class:`Difficulty` defaults.
        distractors: Class names the clutter is drawn from (needed when ``clutter > 0``).

    Examples:
        >>> pixels, ann = render_sample("nut", 2, 32, np.random.default_rng(0))
        >>> pixels.shape, pixels.dtype, sorted(ann)
        ((32, 32, 3), dtype('uint8'), ['area', 'bbox', 'segmentation'])
    """
    d = difficulty or Difficulty()
    name = list(CLASSES)[class_index] if isinstance(class_index, int) else class_index
    if name not in CATALOGUE:
        raise KeyError(f"unknown class {name!r}; catalogue: {list(CATALOGUE)}")
    if d.clutter and not distractors:
        raise ValueError(f"clutter={d.clutter} needs class names to draw distractors from")
    shape, kind = CATALOGUE[name]
    colour = PALETTE[rng.integers(len(PALETTE))]
    img = _scene(SCENES[scene_index], size, rng)
    if d.clutter:
        img = _paint_clutter(img, distractors, d, rng)
    # Every draw below a knob's default is skipped at that default: the same bytes as before.
    r = rng.uniform(*d.scale) * size
    stretch = math.exp(rng.uniform(-d.aspect, d.aspect)) if d.aspect else 1.0
    reach = r * max(stretch, 1 / stretch)
    cx, cy = rng.uniform(reach + 1, size - reach - 1), rng.uniform(reach + 1, size - reach - 1)
    turns = shape not in ("circle", "ring") or stretch != 1.0  # a plain disc needs no angle
    angle = rng.uniform(0, 2 * math.pi) if turns else 0.0
    mask, rle, segmentation = _shape(shape, cx, cy, r, angle, stretch, size)
    img = np.where(mask[..., None], texture(kind, colour, size, rng, cx, cy, r), img)
    if d.occlusion:
        bar = _occluder(mask, cx, cy, reach, d, rng)
        paint = PALETTE[rng.integers(len(PALETTE))] * rng.uniform(0.5, 1.0)
        img = np.where(bar[..., None], paint + rng.normal(0, 0.03, img.shape), img)
        if (mask & bar).any():
            mask = mask & ~bar
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            segmentation = {"size": [size, size], "counts": rle["counts"].decode("ascii")}
    if d.noise:
        img = img + rng.normal(0, d.noise, img.shape)
    x0, y0, w, h = (float(v) for v in mask_utils.toBbox(rle))
    ann = {"segmentation": segmentation, "bbox": [x0, y0, w, h], "area": float(mask.sum())}
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), ann
