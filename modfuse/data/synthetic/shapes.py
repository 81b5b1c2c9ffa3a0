"""The object catalogue of the synthetic world: silhouettes (polygons and round masks) and
textures. :mod:`modfuse.data.synthetic.render` composes them with scenes into images.

Twelve classes, each a (shape, texture) pair. The first six (:data:`CLASSES`) are the default
world's; the other six (:data:`PRETRAIN_CLASSES`) are disjoint from them, for a pretraining
world that plays ImageNet's role to an evaluation world's COCO (other classes, same kind of
images).
"""

from __future__ import annotations

import math

import numpy as np

#: Every class the generator can draw: name -> (shape, texture). Colours are drawn per object
#: from one shared palette, so a class is told by its silhouette and texture, not its colour:
#: what a blur takes away.
CATALOGUE: dict[str, tuple[str, str]] = {
    "ball": ("circle", "shaded"),
    "box": ("square", "stripes"),
    "kite": ("triangle", "checker"),
    "star": ("star", "solid"),
    "ring": ("ring", "solid"),
    "cross": ("cross", "dots"),
    "egg": ("ellipse", "speckle"),
    "moon": ("crescent", "solid"),
    "nut": ("hexagon", "grid"),
    "gem": ("rhombus", "checker"),
    "arrow": ("arrow", "stripes"),
    "tee": ("tee", "shaded"),
}
#: The default world's classes (category ids 1..6 in this order).
CLASSES: dict[str, tuple[str, str]] = {k: CATALOGUE[k] for k in list(CATALOGUE)[:6]}
#: Six classes disjoint from :data:`CLASSES`: a pretraining world's, as ImageNet is to COCO.
PRETRAIN_CLASSES: tuple[str, ...] = tuple(list(CATALOGUE)[6:])
PALETTE = np.array(
    [
        (0.90, 0.15, 0.10),
        (0.55, 0.30, 0.10),
        (0.75, 0.20, 0.80),
        (1.00, 0.85, 0.05),
        (0.05, 0.85, 0.85),
        (0.95, 0.95, 0.95),
        (0.95, 0.50, 0.05),
        (0.20, 0.20, 0.90),
    ]
)
#: Shapes stored as RLE (compressed) instead of polygons: both COCO encodings get exercised.
#: (An occluded object is stored as RLE whatever its shape: its visible pixels are no polygon.)
RLE_SHAPES = {"circle", "ring", "ellipse", "crescent"}

# Unit-radius outlines of the polygon shapes, before aspect, rotation and scaling.
_STAR = [
    ((1.0 if i % 2 == 0 else 0.45) * math.cos(a), (1.0 if i % 2 == 0 else 0.45) * math.sin(a))
    for i, a in enumerate(np.arange(10) * math.pi / 5 - math.pi / 2)
]
_T = 0.33
_OUTLINES: dict[str, list[tuple[float, float]]] = {
    "square": [
        (math.cos(a) * 0.95, math.sin(a) * 0.95) for a in np.arange(4) * math.pi / 2 + math.pi / 4
    ],
    "triangle": [(math.cos(a), math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3 - math.pi / 2],
    "star": _STAR,
    "cross": [
        (-_T, -1),
        (_T, -1),
        (_T, -_T),
        (1, -_T),
        (1, _T),
        (_T, _T),
        (_T, 1),
        (-_T, 1),
        (-_T, _T),
        (-1, _T),
        (-1, -_T),
        (-_T, -_T),
    ],  # fmt: skip
    "hexagon": [(math.cos(a), math.sin(a)) for a in np.arange(6) * math.pi / 3],
    "rhombus": [(1.0, 0.0), (0.0, 0.55), (-1.0, 0.0), (0.0, -0.55)],
    "arrow": [
        (-1, -0.25),
        (0.2, -0.25),
        (0.2, -0.65),
        (1, 0),
        (0.2, 0.65),
        (0.2, 0.25),
        (-1, 0.25),
    ],  # fmt: skip
    "tee": [
        (-1, -1),
        (1, -1),
        (1, -0.45),
        (0.3, -0.45),
        (0.3, 1),
        (-0.3, 1),
        (-0.3, -0.45),
        (-1, -0.45),
    ],  # fmt: skip
}


def polygon(
    shape: str, cx: float, cy: float, r: float, angle: float, stretch: float = 1.0
) -> list[float]:
    """Vertices ``[x1, y1, x2, y2, ...]`` (rounded to 0.01 px, as stored) of a polygon shape.

    ``stretch`` scales the shape's own x axis by it and its y axis by its inverse (aspect
    jitter, area kept), before the rotation by ``angle``.

    Examples:
        >>> polygon("square", 10, 10, 5, 0.0)[:2]
        [13.36, 13.36]
    """
    if shape not in _OUTLINES:
        raise KeyError(f"{shape!r} is not a polygon shape; polygons: {sorted(_OUTLINES)}")
    ca, sa = math.cos(angle), math.sin(angle)
    out: list[float] = []
    for px, py in _OUTLINES[shape]:
        if stretch != 1.0:  # skipped at 1.0 so the default world keeps its exact bytes
            px, py = px * stretch, py / stretch
        out += [cx + r * (ca * px - sa * py), cy + r * (sa * px + ca * py)]
    return [round(v, 2) for v in out]


def round_mask(
    shape: str, cx: float, cy: float, r: float, size: int, angle: float = 0.0, stretch: float = 1.0
) -> np.ndarray:
    """Binary ``(size, size)`` mask of a round shape, sampled at pixel centres.

    Examples:
        >>> int(round_mask("circle", 8, 8, 3, 16).sum())
        32
    """
    y, x = np.mgrid[0:size, 0:size] + 0.5
    if angle == 0.0 and stretch == 1.0:  # the default world's exact arithmetic
        u, v = x - cx, y - cy
    else:  # the shape's own axes: rotated by angle, x stretched, y squeezed
        ca, sa = math.cos(angle), math.sin(angle)
        u = ((x - cx) * ca + (y - cy) * sa) / stretch
        v = (-(x - cx) * sa + (y - cy) * ca) * stretch
    if shape == "ellipse":
        v = v / 0.6  # an egg: 1 long by 0.6 wide, within the radius like every shape
    d = np.sqrt(u**2 + v**2)
    if shape in ("circle", "ellipse"):
        return d <= r
    if shape == "ring":
        return (d <= r) & (d >= 0.55 * r)
    if shape == "crescent":
        return (d <= r) & (np.sqrt((u - 0.5 * r) ** 2 + v**2) > 0.75 * r)
    raise KeyError(f"{shape!r} is not a round shape; round shapes: {sorted(RLE_SHAPES)}")


def texture(
    kind: str,
    colour: np.ndarray,
    size: int,
    rng: np.random.Generator,
    cx: float,
    cy: float,
    r: float,
) -> np.ndarray:
    """A ``(size, size, 3)`` texture in [0, 1] of ``colour``, for an object centred at
    ``(cx, cy)`` with radius ``r`` (the pattern's period follows the object's size).

    Examples:
        >>> texture("stripes", PALETTE[0], 8, np.random.default_rng(0), 4, 4, 3).shape
        (8, 8, 3)
    """
    y, x = np.mgrid[0:size, 0:size] + 0.5
    base = np.broadcast_to(colour, (size, size, 3)).copy()
    if kind == "shaded":
        d = np.sqrt((x - cx + 0.3 * r) ** 2 + (y - cy + 0.3 * r) ** 2) / (1.6 * r)
        base *= np.clip(1.15 - d, 0.35, 1.1)[..., None]
    elif kind == "stripes":
        period = max(2.0, r / 3)
        base *= np.where((y // period) % 2 == 0, 1.0, 0.55)[..., None]
    elif kind == "checker":
        cell = max(2.0, r / 3)
        check = ((x // cell) + (y // cell)) % 2 == 0
        base = np.where(check[..., None], base, np.array([0.2, 0.05, 0.3]))
    elif kind == "dots":
        period = max(3.0, r / 2.5)
        dots = ((x % period) - period / 2) ** 2 + ((y % period) - period / 2) ** 2 < (
            period / 4
        ) ** 2
        base = np.where(dots[..., None], np.array([0.1, 0.6, 0.1]), base)
    elif kind == "grid":
        period = max(3.0, r / 2)
        lines = ((x % period) < 1.0) | ((y % period) < 1.0)
        base = np.where(lines[..., None], np.array([0.1, 0.1, 0.1]), base)
    elif kind == "speckle":
        base *= np.where(rng.random((size, size)) < 0.2, 0.35, 1.0)[..., None]
    elif kind != "solid":
        raise KeyError(f"unknown texture {kind!r}")
    jitter = rng.uniform(0.9, 1.1, size=3)
    return np.clip(base * jitter + rng.normal(0, 0.02, (size, size, 3)), 0, 1)
