"""CocoContext(hide_instances=...) on a COCO folder written by hand, with real COCO's quirks.

One 96x64 image holds three dogs (polygons), a car, and a crowd of dogs (uncompressed RLE,
``iscrowd: 1``); category ids are non-contiguous (1, 3, 18) as in COCO, and so are image and
annotation ids. A second image of another size holds one more dog. Each instance is painted in
its own colour where pycocotools rasterizes its mask, so a colour in a view says which instance
leaked into it.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from modfuse import ContextViews
from modfuse.data import CocoContext
from modfuse.data.coco.dataset import read_image

DOG, CAR = 18, 3
BACKGROUND = (30, 30, 30)


def rect(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    """A COCO polygon (pixel-edge coordinates, one ring)."""
    return [[float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with zeros."""
    counts, current, run = [], 0, 0
    for v in mask.flatten(order="F"):
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


# name: (image id, annotation id, category, colour RGB, segmentation builder, iscrowd)
# Drawn in this order: B lies under A where their masks overlap (A's pixels win there).
H, W = 64, 96
crowd = np.zeros((H, W), dtype=np.uint8)
crowd[34:60, 70:94] = 1
INSTANCES = {
    "B": (139, 57, DOG, (20, 200, 20), rect(34, 4, 44, 30), 0),
    "A": (139, 101, DOG, (220, 20, 20), rect(4, 6, 36, 42), 0),
    "C": (139, 230, DOG, (20, 20, 220), rect(50, 40, 62, 56), 0),
    "D": (139, 9, CAR, (220, 220, 20), rect(74, 4, 92, 22), 0),
    "E": (139, 900, DOG, (200, 20, 200), uncompressed_rle(crowd), 1),
    "F": (632, 1201, DOG, (20, 200, 200), rect(4, 48, 30, 58), 0),
}
SIZES = {139: (H, W), 632: (60, 80)}  # (height, width)


def colour_share(view: torch.Tensor, name: str) -> int:
    """How many pixels of ``view`` (3, h, w) clearly have ``name``'s colour."""
    r, g, b = view
    tests = {
        "A": r - torch.maximum(g, b),
        "B": g - torch.maximum(r, b),
        "C": b - torch.maximum(r, g),
        "D": torch.minimum(r, g) - b,
        "E": torch.minimum(r, b) - g,
        "F": torch.minimum(g, b) - r,
    }
    return int((tests[name] > 0.2).sum())


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    (root / "train2017").mkdir()
    (root / "annotations").mkdir()
    images, annotations = [], []
    pixels = {iid: np.full((h, w, 3), BACKGROUND, dtype=np.uint8) for iid, (h, w) in SIZES.items()}
    for iid, aid, cid, colour, seg, iscrowd in INSTANCES.values():
        h, w = SIZES[iid]
        rle = mask_utils.frPyObjects(seg, h, w)
        rle = mask_utils.merge(rle) if isinstance(rle, list) else rle
        pixels[iid][mask_utils.decode(rle).astype(bool)] = colour
        annotations.append(
            {
                "id": aid,
                "image_id": iid,
                "category_id": cid,
                "segmentation": seg,
                "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": iscrowd,
            }
        )
    for iid, (h, w) in SIZES.items():
        name = f"{iid:012d}.jpg"
        Image.fromarray(pixels[iid]).save(root / "train2017" / name, quality=95, subsampling=0)
        images.append({"id": iid, "file_name": name, "height": h, "width": w, "license": 1})
    categories = [
        {"supercategory": "person", "id": 1, "name": "person"},
        {"supercategory": "vehicle", "id": CAR, "name": "car"},
        {"supercategory": "animal", "id": DOG, "name": "dog"},
    ]
    data = {
        "info": {"description": "hand-written COCO-format folder", "version": "1.0"},
        "licenses": [{"id": 1, "name": "test", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    ann_file = root / "annotations" / "instances_train2017.json"
    ann_file.write_text(json.dumps(data))
    return root / "train2017", ann_file


def item(coco, name: str, views: ContextViews, **kwargs) -> dict:
    data = CocoContext(*coco, views=views, one_per_image=False, **kwargs)
    index = [a["id"] for a in data.items].index(INSTANCES[name][1])
    return data[index]


@pytest.mark.parametrize("hide", ["box", "mask"])
def test_bg_view_hides_other_instances_of_the_category(coco, hide):
    views = ContextViews(size=None, hide=hide)
    only = item(coco, "A", views, hide_instances="item")
    category = item(coco, "A", views)  # the default
    everything = item(coco, "A", views, hide_instances="all")
    for name in "BCE":  # the other dogs, the crowd included
        assert colour_share(only["bg"], name) > 20, name
        assert colour_share(category["bg"], name) == 0, name
        assert colour_share(everything["bg"], name) == 0, name
    assert colour_share(only["bg"], "D") > 100  # the car: another category
    assert colour_share(category["bg"], "D") == colour_share(only["bg"], "D")
    assert colour_share(everything["bg"], "D") == 0
    # The item itself is hidden by the views in every mode.
    assert all(colour_share(it["bg"], "A") == 0 for it in (only, category, everything))


@pytest.mark.parametrize("hide", ["box", "mask"])
def test_item_pixels_and_fg_view_are_unchanged(coco, hide):
    # B's mask (and, with hide="box", its box) overlaps A: A's own pixels must stay.
    views = ContextViews(size=32, hide=hide)
    items = {m: item(coco, "A", views, hide_instances=m) for m in ("item", "category", "all")}
    original = read_image(coco[0] / "000000000139.jpg")
    on = items["item"]["mask"].bool().expand_as(original)
    for mode, it in items.items():
        assert torch.equal(it["mask"], items["item"]["mask"]), mode
        assert torch.equal(it["image"][on], original[on]), mode
        assert torch.equal(it["fg"], items["item"]["fg"]), mode
    assert torch.equal(items["item"]["image"], original)  # "item" paints nothing


def test_painted_with_the_views_fill_and_only_from_the_same_image(coco):
    views = ContextViews(size=None, hide="mask", fill="zero")
    it = item(coco, "A", views, hide_instances="all")
    original = read_image(coco[0] / "000000000139.jpg")
    changed = (it["image"] != original).any(0)  # (H, W)
    assert changed.any() and (it["image"][:, changed] == 0).all()
    # F is a dog of another image at rows 48..58, columns 4..30: nothing is painted there.
    assert not changed[48:58, 4:30].any()
    assert torch.equal(it["bg"][:, 48:58, 4:30], original[:, 48:58, 4:30])


def test_other_category_item_hides_the_dogs_only_under_all(coco):
    views = ContextViews(size=None, hide="box")
    original = read_image(coco[0] / "000000000139.jpg")
    assert torch.equal(item(coco, "D", views)["image"], original)  # no other car
    car_all = item(coco, "D", views, hide_instances="all")
    assert all(colour_share(car_all["bg"], n) == 0 for n in "ABCE")


def test_resized_images_leak_no_hidden_colour(coco):
    # Painting happens before the resize: no blend of a hidden instance's colour survives.
    views = ContextViews(size=24, hide="mask")
    for mode, survives in (("item", True), ("category", False)):
        it = item(coco, "A", views, hide_instances=mode, image_size=48)
        assert it["image"].shape == (3, 48, 48) and it["bg"].shape == (3, 24, 24)
        for name in "BCE":
            assert (colour_share(it["image"], name) > 0) == survives, (mode, name)
            assert (colour_share(it["bg"], name) > 0) == survives, (mode, name)


def test_crowd_is_hidden_but_never_an_item(coco):
    data = CocoContext(*coco, one_per_image=False)
    assert {a["id"] for a in data.items} == {57, 101, 230, 9, 1201}
    assert data.skipped["crowd"] == 1
    assert data.classes == ["person", "car", "dog"]
    assert data[[a["id"] for a in data.items].index(101)]["label"] == 2


def test_hide_instances_is_in_the_fingerprint_and_checked(coco):
    prints = {
        m: CocoContext(*coco, hide_instances=m).fingerprint() for m in ("item", "category", "all")
    }
    assert len(set(prints.values())) == 3
    assert CocoContext(*coco).fingerprint() == prints["category"]
    with pytest.raises(ValueError, match=r"hide_instances must be one of .*'all'.*got 'others'"):
        CocoContext(*coco, hide_instances="others")
