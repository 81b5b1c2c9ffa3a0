"""Draw docs/img/hide_instances.png: what ``CocoContext(hide_instances=...)`` hides.

A tiny COCO-format folder is written to a temporary directory: one scene with three dogs and
a car (polygons, category ids 3 and 18 as in COCO). The item is the largest dog. For both hide
rules of the views (``hide="box"`` and ``"mask"``) the figure shows the raw image (the item
outlined), the fg view, and the bg view under ``hide_instances="item"``, ``"category"`` and
``"all"``.

Run:  python docs/make_hide_figure.py [--out docs/img/hide_instances.png]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

from modfuse import ContextViews  # noqa: E402
from modfuse.data import CocoContext  # noqa: E402

H, W = 120, 160
DOG, CAR = 18, 3
# (annotation id, category, colour, centre x, centre y, radius x, radius y)
INSTANCES = [
    (1, DOG, (150, 90, 40), 48, 76, 26, 20),  # the item: the largest dog
    (2, DOG, (190, 130, 60), 106, 86, 14, 11),
    (3, DOG, (120, 70, 30), 138, 52, 11, 9),
    (4, CAR, (200, 30, 40), 112, 30, 20, 10),
]


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> list[list[float]]:
    """A COCO polygon (one ring) around an ellipse."""
    ring = []
    for k in range(n):
        t = 2 * math.pi * k / n
        ring += [round(cx + rx * math.cos(t), 1), round(cy + ry * math.sin(t), 1)]
    return [ring]


def write_scene(root: Path) -> tuple[Path, Path]:
    """One image and its instances JSON in COCO 2017 layout under ``root``."""
    (root / "train2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    y = np.linspace(0, 1, H)[:, None, None]
    sky = np.array([120, 170, 230]) * (1 - 0.3 * y)
    grass = np.array([70, 150, 60]) * (1.1 - 0.3 * y)
    pixels = np.where(y < 0.45, sky, grass) * np.ones((1, W, 1))
    pixels = pixels.clip(0, 255).astype(np.uint8)
    annotations = []
    for aid, cid, colour, cx, cy, rx, ry in INSTANCES:
        seg = ellipse(cx, cy, rx, ry)
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, H, W))
        pixels[mask_utils.decode(rle).astype(bool)] = colour
        annotations.append(
            {
                "id": aid,
                "image_id": 42,
                "category_id": cid,
                "segmentation": seg,
                "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            }
        )
    Image.fromarray(pixels).save(root / "train2017" / "000000000042.jpg", quality=95)
    data = {
        "images": [{"id": 42, "file_name": "000000000042.jpg", "height": H, "width": W}],
        "annotations": annotations,
        "categories": [{"id": CAR, "name": "car"}, {"id": DOG, "name": "dog"}],
    }
    ann_file = root / "annotations" / "instances_train2017.json"
    ann_file.write_text(json.dumps(data))
    return root / "train2017", ann_file


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "img/hide_instances.png"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    modes = ("item", "category", "all")
    with tempfile.TemporaryDirectory() as tmp:
        image_dir, ann_file = write_scene(Path(tmp))
        fig, axes = plt.subplots(2, 5, figsize=(10, 4.3))
        for row, hide in zip(axes, ("box", "mask"), strict=True):
            views = ContextViews(size=96, hide=hide)
            items = {
                m: CocoContext(image_dir, ann_file, views=views, hide_instances=m)[0] for m in modes
            }
            first = items["item"]
            panels = [("raw image (item outlined)", first["image"]), ("fg view", first["fg"])]
            panels += [(f'bg, hide_instances="{m}"', items[m]["bg"]) for m in modes]
            for ax, (title, img) in zip(row, panels, strict=True):
                ax.imshow(img.permute(1, 2, 0).numpy())
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(title, fontsize=7.5)
            row[0].contour(first["mask"][0].numpy(), levels=[0.5], colors="white", linewidths=1)
            row[0].set_ylabel(f'views hide="{hide}"', fontsize=8.5)
        fig.suptitle(
            "Item: the largest dog. Other dogs: same category. Red car: another category.",
            fontsize=9,
        )
        fig.tight_layout()
        fig.savefig(out, dpi=80)
        plt.close(fig)
    return out


if __name__ == "__main__":
    print(main(sys.argv[1:]))
