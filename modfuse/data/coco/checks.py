"""Checks of COCO data: annotations (cheap enough to run on all of them) and image files.

pycocotools trusts its input: it keeps the last of two images with one id, reads a polygon of
four numbers as a box, decodes an RLE at its own ``size`` whatever the image's, and fills a
mask from memory it never wrote when an RLE's run lengths do not add up to ``height * width``,
and ends the process (SIGSEGV) on a polygon with coordinates near 4e8.
These checks find such annotations before anything is decoded. PIL clips 16-bit pixels to
white in ``convert("RGB")`` and decodes images up to twice its bomb limit: :func:`read_image`
reads both right.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

#: Why an annotation is not used: reason -> what it means.
SEGMENTATION_PROBLEMS = {
    "bad_segmentation": "not a list of polygons (each >= 3 points, an even count of finite "
    "numbers) nor an RLE whose run lengths add up to height * width",
    "rle_size_mismatch": "RLE 'size' differs from the image's [height, width]",
    "coordinates_out_of_range": "a polygon point lies more than one image size outside the "
    "image (x outside [-width, 2 * width] or y outside [-height, 2 * height]) or beyond "
    "1e7 pixels: pycocotools' integer rasterizer overflows and crashes the process on such "
    "coordinates",
    "empty_mask": "its mask is empty (the object lies wholly outside the image, or has no area)",
    "image_without_size": "its image entry has no positive integer 'height' and 'width'",
}

#: Polygons whose clipped box is smaller than this (pixels) are rasterized to find empty masks.
_SMALL_BOX = 16.0
#: Largest polygon coordinate magnitude (pixels) accepted whatever the image size. pycocotools
#: rasterizes at 5x in 32-bit integers: a polygon to 4e8 ends the process with SIGSEGV.
MAX_COORDINATE = 1e7


def read_image(path: Path) -> torch.Tensor:
    """An image file as RGB ``(3, H, W)`` float in [0, 1], with an error naming a bad file.

    8-bit modes (``L``, ``P``, ``RGBA``, ``CMYK``...) go through PIL's ``convert("RGB")``;
    16-bit grayscale (``I;16``, ``I;16B``..., and ``I``, as older PIL opens 16-bit PNGs) is
    divided by 65535, where ``convert`` would clip every value above 255 to white. An image
    over PIL's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb) is refused unread.
    """
    try:
        with warnings.catch_warnings():
            # Between 1x and 2x the limit PIL only warns, then decodes: refuse it as well.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                arr = _rgb_array(im, path)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(
            f"image file {path} is too large to decode safely, maybe a decompression bomb: "
            f"{err} Raise PIL.Image.MAX_IMAGE_PIXELS (now {Image.MAX_IMAGE_PIXELS}) only for "
            "files you trust."
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"image file {path} is corrupt or not an image: {err}") from err
    return torch.from_numpy(arr).permute(2, 0, 1)


def _rgb_array(im: Image.Image, path: Path) -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1] from an open PIL image."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        gray = np.asarray(im).astype(np.float32)  # (H, W)
        if im.mode == "I" and gray.size and (gray.min() < 0 or gray.max() > 65535):
            raise ValueError(
                f"image file {path} is 32-bit integer (mode 'I') with values in "
                f"[{gray.min():.0f}, {gray.max():.0f}]; expected 16-bit values in [0, 65535]"
            )
        return np.repeat(gray[..., None] / 65535.0, 3, axis=-1)
    if im.mode == "F":
        raise ValueError(
            f"image file {path} is 32-bit float (mode 'F'), whose scale is unknown; "
            "expected 8- or 16-bit pixels"
        )
    try:
        rgb = im.convert("RGB")
    except ValueError as err:  # a mode PIL cannot turn into RGB
        raise ValueError(f"image file {path} has mode {im.mode!r}: {err}") from err
    return np.asarray(rgb, dtype=np.float32) / 255.0


def check_unique_ids(dataset: dict[str, Any], ann_file: str | os.PathLike) -> None:
    """Raise if two ``images`` (or two ``annotations``) share an id: the JSON is ambiguous.

    pycocotools would silently keep only the last entry of each id.

    Examples:
        >>> check_unique_ids({"images": [{"id": 1}, {"id": 2}], "annotations": []}, "a.json")
        >>> check_unique_ids({"images": [{"id": 1}, {"id": 1}]}, "a.json")
        Traceback (most recent call last):
        ...
        ValueError: a.json lists image id 1 2 times (file names [None, None]); ids must be unique
    """
    for key, what in (("images", "image"), ("annotations", "annotation")):
        entries = dataset.get(key) or []
        counts = Counter(e.get("id") for e in entries)
        dups = [i for i, n in counts.items() if n > 1]
        if not dups:
            continue
        first = dups[0]
        names = [e.get("file_name") for e in entries if e.get("id") == first]
        also = f" (and {len(dups) - 1} more duplicated ids: {dups[1:6]})" if len(dups) > 1 else ""
        detail = f" (file names {names})" if key == "images" else ""
        raise ValueError(
            f"{ann_file} lists {what} id {first} {counts[first]} times{detail}; "
            f"ids must be unique{also}"
        )


def segmentation_problem(segmentation: Any, height: Any, width: Any) -> str | None:
    """Why a segmentation cannot give a correct, non-empty mask of a ``height x width`` image.

    Returns a key of :data:`SEGMENTATION_PROBLEMS`, or None when the segmentation looks right.
    Polygons are checked by their structure and bounds (the few whose clipped box is tiny are
    rasterized); RLEs by their size, run lengths and foreground. A mask that still decodes
    empty (a sliver between pixel centres) is found only when decoded.

    Examples:
        >>> segmentation_problem([[1, 1, 9, 1, 9, 9]], 10, 10) is None
        True
        >>> segmentation_problem([[1, 1, 9, 9]], 10, 10)  # 2 points: pycocotools sees a box
        'bad_segmentation'
        >>> segmentation_problem([[12, 12, 18, 12, 18, 18]], 10, 10)  # right of the image
        'empty_mask'
        >>> segmentation_problem({"size": [12, 10], "counts": [0, 120]}, 10, 10)
        'rle_size_mismatch'
        >>> segmentation_problem([[0, 0, 3e9, 0, 3e9, 3e9, 0, 3e9]], 10, 10)  # would crash
        'coordinates_out_of_range'
    """
    if not (_is_size(height) and _is_size(width)):
        return "image_without_size"
    if isinstance(segmentation, list):
        return _polygon_problem(segmentation, height, width)
    if isinstance(segmentation, dict):
        return _rle_problem(segmentation, height, width)
    return "bad_segmentation"


def segmentation_warning(ann_file: str | os.PathLike, skipped_ids: dict[str, list[Any]]) -> str:
    """The warning for annotations skipped for bad segmentations ("" when there are none).

    Examples:
        >>> print(segmentation_warning("a.json", {"empty_mask": [7, 9], "small": [3]}))
        2 annotations in a.json skipped for bad segmentations: empty_mask 2 (ids [7, 9]) (see ...
    """
    bad = {r: ids for r, ids in sorted(skipped_ids.items()) if r in SEGMENTATION_PROBLEMS and ids}
    if not bad:
        return ""
    parts = [
        f"{r} {len(ids)} (ids {ids[:5]}{' ...' if len(ids) > 5 else ''})" for r, ids in bad.items()
    ]
    return (
        f"{sum(map(len, bad.values()))} annotations in {ann_file} skipped for bad "
        f"segmentations: {'; '.join(parts)} (see dataset.skipped_ids)"
    )


def rle_string_counts(counts: str | bytes) -> list[int] | None:
    """The run lengths of a compressed RLE string (pycocotools' ``rleFrString``), or None.

    None for a string that is truncated, holds characters outside the encoding or gives a
    negative run.

    Examples:
        >>> import numpy as np
        >>> rle = mask_utils.encode(np.asfortranarray(np.eye(3, dtype=np.uint8)))
        >>> rle_string_counts(rle["counts"])
        [0, 1, 3, 1, 3, 1]
    """
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            return None
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                return None  # the last number is cut off
            c = counts[p] - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)  # sign extension
        if len(runs) > 2:
            x += runs[-2]  # stored as the difference to the run two back
        if x < 0:
            return None
        runs.append(x)
    return runs


def _is_size(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_count(v: Any) -> bool:
    return _is_number(v) and v >= 0 and float(v).is_integer()


def _polygon_problem(rings: list[Any], height: int, width: int) -> str | None:
    if not rings:
        return "bad_segmentation"
    xs: list[float] = []
    ys: list[float] = []
    for ring in rings:
        # pycocotools reads 4 numbers as a box and fails on fewer; an odd count is cut short.
        if not isinstance(ring, list) or len(ring) < 6 or len(ring) % 2:
            return "bad_segmentation"
        if not all(_is_number(v) for v in ring):
            return "bad_segmentation"
        xs += ring[0::2]
        ys += ring[1::2]
    # One image size of slack keeps real data (points a little outside the image) and refuses
    # what no annotation tool writes, before pycocotools' int32 arithmetic sees it.
    x_ok = -width <= min(xs) and max(xs) <= 2 * width
    y_ok = -height <= min(ys) and max(ys) <= 2 * height
    if not (x_ok and y_ok) or max(map(abs, xs + ys)) > MAX_COORDINATE:
        return "coordinates_out_of_range"
    x0, x1, y0, y1 = max(min(xs), 0), min(max(xs), width), max(min(ys), 0), min(max(ys), height)
    if x1 <= x0 or y1 <= y0:
        return "empty_mask"  # wholly outside the image, or flat
    if (x1 - x0) * (y1 - y0) < _SMALL_BOX:
        rle = mask_utils.merge(mask_utils.frPyObjects(rings, height, width))
        if mask_utils.area(rle) == 0:
            return "empty_mask"
    return None


def _rle_problem(rle: dict[str, Any], height: int, width: int) -> str | None:
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_count(v) for v in size)):
        return "bad_segmentation"
    if [int(v) for v in size] != [height, width]:
        return "rle_size_mismatch"
    if isinstance(counts, list):
        runs = [int(c) for c in counts] if all(_is_count(c) for c in counts) else None
    elif isinstance(counts, (str, bytes)):
        runs = rle_string_counts(counts)
    else:
        runs = None
    # Runs that do not cover the image exactly make pycocotools read or write past the mask.
    if runs is None or sum(runs) != height * width:
        return "bad_segmentation"
    if sum(runs[1::2]) == 0:
        return "empty_mask"
    return None
