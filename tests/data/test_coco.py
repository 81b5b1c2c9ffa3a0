import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from modfuse import ContextViews
from modfuse.data import CocoContext, make_loader
from modfuse.data.synthetic import CLASSES, RLE_SHAPES
from tests.data.conftest import split


def copy_root(coco_root, tmp_path):
    dst = tmp_path / "coco"
    shutil.copytree(coco_root, dst)
    return dst


def rewrite_annotations(root, change):
    path = root / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_counts_per_class_and_label_map(coco_root):
    data = CocoContext(*split(coco_root), size=24)
    assert len(data) == 60
    labels = Counter(data.items[i]["category_id"] for i in range(len(data)))
    assert set(labels.values()) == {10}
    assert data.classes == list(CLASSES)
    assert data.class_to_index == {name: i for i, name in enumerate(CLASSES)}
    again = CocoContext(*split(coco_root), size=24)
    assert again.class_to_index == data.class_to_index
    for i in (0, 7, 33):
        item = data[i]
        assert item["label"] == item["category_id"] - 1
        assert data.classes[item["label"]] == list(CLASSES)[item["category_id"] - 1]


def test_category_selection_by_name_and_id_sets_label_order(coco_root):
    data = CocoContext(*split(coco_root), categories=["star", 1])
    assert data.classes == ["star", "ball"]
    assert len(data) == 20
    labels = {data[i]["category_id"]: data[i]["label"] for i in range(len(data))}
    assert labels == {4: 0, 1: 1}


def test_mask_fg_bg_consistency(coco_root):
    views = ContextViews(size=24, hide="mask")
    data = CocoContext(*split(coco_root), views=views)
    fill = views.fill_value(torch.zeros(1, 3, 1, 1))[0]
    for i in range(0, 60, 7):
        item = data[i]
        image, mask = item["image"], item["mask"]
        assert image.shape == (3, 32, 32) and mask.shape == (1, 32, 32)
        assert 0 <= image.min() and image.max() <= 1
        fg_mask = views.fg_mask(mask[None])[0]
        outside = (fg_mask == 0).expand_as(item["fg"])
        assert outside.any()
        torch.testing.assert_close(
            item["fg"][outside], fill.expand_as(item["fg"])[outside], atol=1e-5, rtol=0
        )
        plain = ContextViews(size=None, hide="mask")(image[None], mask[None])["bg"][0]
        inside = mask.bool().expand_as(image)
        torch.testing.assert_close(plain[inside], fill.expand_as(plain)[inside], atol=1e-6, rtol=0)
        assert torch.equal(plain[~inside], image[~inside])


def test_polygon_and_rle_both_decoded(coco_root):
    data = CocoContext(*split(coco_root))
    kinds = Counter()
    for i in range(12):
        ann = data.items[i]
        shape = CLASSES[data.classes[data[i]["label"]]][0]
        seg = ann["segmentation"]
        kinds["rle" if isinstance(seg, dict) else "polygon"] += 1
        assert isinstance(seg, dict) == (shape in RLE_SHAPES)
        mask = data[i]["mask"]
        assert mask.sum() == ann["area"] > 20
        # The mask is where the object was painted: its colour differs from the fill.
        obj = data[i]["image"][:, mask[0].bool()]
        assert obj.shape[1] == ann["area"]
    assert kinds["rle"] >= 2 and kinds["polygon"] >= 2


def test_uncompressed_rle_decodes_like_compressed(coco_root, tmp_path):
    root = copy_root(coco_root, tmp_path)
    reference = CocoContext(*split(root))[0]["mask"]  # a ball: compressed RLE

    def to_uncompressed(data):
        ann = data["annotations"][0]
        seg = ann["segmentation"]
        m = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
        flat = m.flatten(order="F")
        counts, current, run = [], 0, 0
        for v in flat:  # run lengths in column-major order, starting with zeros
            if v != current:
                counts.append(run)
                current, run = v, 0
            run += 1
        counts.append(run)
        ann["segmentation"] = {"size": [32, 32], "counts": [int(c) for c in counts]}

    rewrite_annotations(root, to_uncompressed)
    assert torch.equal(CocoContext(*split(root))[0]["mask"], reference)


def test_crowd_and_bad_annotations_are_counted_skips(coco_root, tmp_path):
    root = copy_root(coco_root, tmp_path)

    def add_problems(data):
        base = dict(data["annotations"][0])
        data["annotations"] += [
            {**base, "id": 9001, "iscrowd": 1},
            {**base, "id": 9002, "image_id": 777777},
            {**base, "id": 9003, "category_id": 99},
        ]

    rewrite_annotations(root, add_problems)
    data = CocoContext(*split(root), one_per_image=False)
    assert len(data) == 60
    assert data.skipped == Counter({"crowd": 1, "unknown_image": 1, "unknown_category": 1})
    assert 9001 not in {a["id"] for a in data.items}


def test_missing_image_file_is_skipped_with_warning(coco_root, tmp_path):
    root = copy_root(coco_root, tmp_path)
    (root / "train2017" / "000000000003.jpg").unlink()
    with pytest.warns(UserWarning, match="1 annotations point to image files missing"):
        data = CocoContext(*split(root))
    assert len(data) == 59 and data.skipped["missing_image_file"] == 1


def test_corrupt_jpeg_is_a_clear_error(coco_root, tmp_path):
    root = copy_root(coco_root, tmp_path)
    (root / "train2017" / "000000000001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    data = CocoContext(*split(root))
    with pytest.raises(ValueError, match=r"image file .*000000000001.jpg is corrupt"):
        data[0]
    assert data[1]["label"] == 1  # the others still load


def test_unknown_category_and_empty_selection(coco_root):
    with pytest.raises(
        KeyError, match=r"category 'zebra' not in instances_train2017.json; it has \['ball'"
    ):
        CocoContext(*split(coco_root), categories=["zebra"])
    with pytest.raises(ValueError, match="no objects left"):
        CocoContext(*split(coco_root), min_area=10_000)


def test_missing_files_are_clear(tmp_path, coco_root):
    with pytest.raises(FileNotFoundError, match="annotation file"):
        CocoContext(coco_root / "train2017", tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        CocoContext(coco_root / "train2017", bad)


def test_scene_labels_and_batches(coco_root):
    data = CocoContext(*split(coco_root), size=24)
    batch = next(iter(make_loader(data, batch_size=8)))
    assert batch["fg"].shape == (8, 3, 24, 24) and batch["image"].shape == (8, 3, 32, 32)
    assert batch["label"].dtype == torch.long and batch["scene"].min() >= 0
    ann = json.loads(split(coco_root)[1].read_text())
    assert [img["scene"] for img in ann["images"][:8]] == batch["scene"].tolist()


def test_image_size_resizes_raw_image_and_mask(coco_root):
    data = CocoContext(*split(coco_root), image_size=48)
    item = data[0]
    assert item["image"].shape == (3, 48, 48) and item["mask"].shape == (1, 48, 48)
    assert set(np.unique(item["mask"].numpy())) <= {0.0, 1.0}
