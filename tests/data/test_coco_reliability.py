"""COCO loading under hostile data (issue 21): no crash, no stale cache, clear errors.

Each test writes its COCO folder with :func:`tests.data.test_coco_bad_data.write_coco`. A
polygon with coordinates near 3e9 ends the process inside pycocotools (SIGSEGV), so the test
that reads one runs in a subprocess: a crash fails that test instead of killing pytest.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modfuse import ContextViews, FusionModel
from modfuse.data import CocoContext, FeatureCache
from modfuse.data.coco.checks import segmentation_problem
from modfuse.data.coco.dataset import read_image
from tests.data.test_coco_bad_data import GOOD, PERSON, H, W, ann, build, write_coco

ROOT = Path(__file__).parents[2]
HUGE = [[0, 0, 3e9, 0, 3e9, 3e9, 0, 3e9]]  # issue 21 item 10: SIGSEGV when decoded


# ------------------------------------------------------------------ item 10: far-out polygons
READ_ALL = """
import json, sys, torch
from modfuse.data import CocoContext
from modfuse.data.coco.dataset import read_image
from modfuse.data.coco.checks import segmentation_problem
data = CocoContext(sys.argv[1], sys.argv[2], one_per_image=False, size=24)
first = data[0]  # the good dog; the huge one is another dog in its image (to be painted)
for i in range(len(data)):
    data[i]
plain = read_image(data.image_dir / "000000000139.jpg")
print(json.dumps({"items": [a["id"] for a in data.items], "skipped_ids": data.skipped_ids,
                  "unpainted": bool(torch.equal(first["image"], plain))}))
"""


def far_out_annotations() -> list[dict]:
    return [
        GOOD,
        ann(801, HUGE),
        ann(802, [[5, 5, 5e8, 5, 5e8, 40]]),  # one point far right, the rest inside
        ann(803, [[2 * W + 1, 5, 2 * W + 4, 5, 2 * W + 4, 9]]),  # just past the tolerance
        ann(804, [[2 * W - 4, 5, 2 * W, 5, 2 * W, 9]]),  # at the tolerance: only empty
        ann(805, [[5, 5, float("inf"), 5, 30, 40]]),  # non-finite: not a coordinate
        ann(806, [[5, 5, float("nan"), 5, 30, 40]]),
        # Within one image size: kept. A person, so the dog item's image paints it not.
        ann(807, [[-W, 2, 20, 2, 20, 3 * H // 2]], category_id=PERSON),
    ]


def test_polygon_far_outside_the_image_is_a_counted_skip_not_a_crash(tmp_path):
    image_dir, ann_file = write_coco(tmp_path, far_out_annotations())
    run = subprocess.run(
        [sys.executable, "-c", READ_ALL, str(image_dir), str(ann_file)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert run.returncode == 0, f"reading crashed (rc {run.returncode}): {run.stderr[-2000:]}"
    said = json.loads(run.stdout.strip().splitlines()[-1])
    assert said["items"] == [101, 807]
    assert said["skipped_ids"] == {
        "coordinates_out_of_range": [801, 802, 803],
        "empty_mask": [804],
        "bad_segmentation": [805, 806],
    }
    # The far-out dog is another instance of the item's category: it cannot be painted.
    assert said["unpainted"] is True
    assert "coordinates_out_of_range 3 (ids [801, 802, 803])" in run.stderr


def test_far_out_polygon_warning_names_file_and_ids(tmp_path):
    # Building does not decode the masks: safe in this process whatever the code does.
    with pytest.warns(UserWarning) as record:
        data = build(tmp_path, [GOOD, ann(801, HUGE), ann(802, [[0, 0, 9, 0, 9, -1e7 - 1]])])
    message = next(str(w.message) for w in record if "coordinates_out_of_range" in str(w.message))
    assert str(tmp_path / "annotations" / "instances_train2017.json") in message
    assert "coordinates_out_of_range 2 (ids [801, 802])" in message
    assert data.skipped["coordinates_out_of_range"] == 2
    assert [a["id"] for a in data.items] == [101]


def test_a_polygon_within_one_image_size_outside_is_kept_and_clipped(tmp_path):
    data = build(tmp_path, [ann(807, [[-W, 2, 20, 2, 20, 3 * H // 2]])])
    mask = data[0]["mask"][0]
    assert mask.shape == (H, W)
    # The triangle's part inside the image: rows 2.. and columns 0..20 only.
    assert mask[:2].sum() == 0 and mask[:, 21:].sum() == 0 and mask[10, :15].all()


def test_coordinates_beyond_the_absolute_limit_are_refused_whatever_the_image_size():
    from modfuse.data.coco.checks import MAX_COORDINATE  # new with issue 21: not at the top

    side = int(MAX_COORDINATE)  # a declared size so large that one image size is no bound
    inside = [[0, 0, MAX_COORDINATE, 0, MAX_COORDINATE, 5]]
    beyond = [[0, 0, MAX_COORDINATE + 1, 0, MAX_COORDINATE + 1, 5]]
    assert segmentation_problem(inside, side, side) is None
    assert segmentation_problem(beyond, side, side) == "coordinates_out_of_range"


# ------------------------------------------------------------------ item 6c: image changes
def rewrite_same_size(path: Path, mtime_ns: int) -> None:
    """Change one byte in the middle of ``path`` (same size) and set its mtime."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_fingerprint_changes_when_a_used_image_is_rewritten(tmp_path):
    image_dir, ann_file = write_coco(tmp_path, [GOOD])  # image 139 holds the item, 285 none
    used, unused = image_dir / "000000000139.jpg", image_dir / "000000000285.png"
    data = CocoContext(image_dir, ann_file)
    before = data.fingerprint()
    # An untouched folder: the same fingerprint twice, and from a new dataset object.
    assert data.fingerprint() == before == CocoContext(image_dir, ann_file).fingerprint()

    # An image that holds no item does not enter the fingerprint.
    rewrite_same_size(unused, unused.stat().st_mtime_ns + 2_000_000_000)
    assert data.fingerprint() == before

    size = used.stat().st_size
    rewrite_same_size(used, used.stat().st_mtime_ns + 2_000_000_000)
    assert used.stat().st_size == size
    assert data.fingerprint() != before
    assert CocoContext(image_dir, ann_file).fingerprint() != before


def test_hash_images_sees_a_rewrite_that_keeps_size_and_mtime(tmp_path):
    image_dir, ann_file = write_coco(tmp_path, [GOOD])
    used = image_dir / "000000000139.jpg"
    data = CocoContext(image_dir, ann_file)
    before, hashed = data.fingerprint(), data.fingerprint(hash_images=True)
    assert CocoContext(image_dir, ann_file, hash_images=True).fingerprint() == hashed != before
    assert data.fingerprint(hash_images=True) == hashed  # reading the bytes twice: the same

    rewrite_same_size(used, used.stat().st_mtime_ns)  # mtime set back: stat cannot tell
    assert data.fingerprint() == before
    assert data.fingerprint(hash_images=True) != hashed
    assert CocoContext(image_dir, ann_file, hash_images=True).fingerprint() != hashed


def test_feature_cache_recomputes_after_an_image_is_rewritten(tmp_path):
    image_dir, ann_file = write_coco(tmp_path / "coco", [GOOD])
    views = ContextViews(size=24)
    torch.manual_seed(0)
    cnn = {"name": "small_cnn", "width": 4, "depth": 2, "freeze": True}
    model = FusionModel({"fg": cnn, "bg": cnn}, num_classes=2, views=views).eval()
    cache = FeatureCache(tmp_path / "cache", progress=False)
    cache.features(model, CocoContext(image_dir, ann_file, views=views))
    assert sorted(cache.computed) == ["bg", "fg"]

    used = image_dir / "000000000139.jpg"
    pixels = read_image(used)
    inverted = (255 - pixels.permute(1, 2, 0).mul(255).round()).to(torch.uint8).numpy()
    Image.fromarray(inverted).save(used, quality=95)
    data = CocoContext(image_dir, ann_file, views=views)
    got = cache.features(model, data)
    assert sorted(cache.computed) == ["bg", "fg"]  # not read back from the stale entry
    item = data[0]
    with torch.no_grad():
        want = model.encode({"fg": item["fg"][None], "bg": item["bg"][None]})
    for m in ("fg", "bg"):
        torch.testing.assert_close(got.features[m], want[m], atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ item 12: clear errors
def write_changed(root: Path, change) -> tuple[Path, Path]:
    image_dir, ann_file = write_coco(root, [GOOD])
    data = json.loads(ann_file.read_text())
    change(data)
    ann_file.write_text(json.dumps(data))
    return image_dir, ann_file


def error_of(root: Path, change) -> str:
    image_dir, ann_file = write_changed(root, change)
    with pytest.raises(ValueError) as err:
        CocoContext(image_dir, ann_file)
    message = str(err.value)
    assert message.startswith(f"{ann_file}: "), message  # names the file
    return message


def test_area_that_is_no_number_names_file_field_and_value(tmp_path):
    message = error_of(tmp_path, lambda d: d["annotations"][0].update(area="big"))
    assert message.endswith(
        "annotations[0] (id 101) field 'area': expected a finite number >= 0 (pixels), "
        "got 'big' (str)"
    )


def test_annotation_without_image_id_names_its_index_and_id(tmp_path):
    message = error_of(tmp_path, lambda d: d["annotations"][0].pop("image_id"))
    assert message.endswith(
        "annotations[0] (id 101) field 'image_id' missing; expected an integer id"
    )


def test_images_given_as_a_dict_is_a_clear_error(tmp_path):
    def as_dict(d):
        d["images"] = {str(img["id"]): img for img in d["images"]}

    message = error_of(tmp_path, as_dict)
    assert message.endswith("field 'images' must be a list of image objects, got a dict")


def test_null_annotation_names_its_index(tmp_path):
    message = error_of(tmp_path, lambda d: d["annotations"].append(None))
    assert message.endswith("annotations[1] must be an annotation object, got null")


def write_outside_image(path: Path) -> None:
    """A real JPEG of image 139's size outside the image folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 128, dtype=np.uint8)).save(path)


@pytest.mark.parametrize("name", ["../x.jpg", "sub/../../x.jpg", "..\\x.jpg", "C:\\x.jpg"])
def test_file_name_climbing_out_of_the_folder_is_refused_unread(tmp_path, name):
    # A real image where "../x.jpg" points: the old code read it as the item's image.
    write_outside_image(tmp_path / "coco" / "x.jpg")
    message = error_of(tmp_path / "coco", lambda d: d["images"][0].update(file_name=name))
    assert message.endswith(
        f"image id 139 has file_name {name!r}; expected a path relative to the image folder "
        "that stays inside it (not absolute, no '..')"
    )


def test_absolute_file_name_is_refused_unread(tmp_path):
    outside = tmp_path / "outside.jpg"
    write_outside_image(outside)
    message = error_of(tmp_path / "coco", lambda d: d["images"][0].update(file_name=str(outside)))
    assert message.endswith(
        f"image id 139 has file_name {str(outside)!r}; expected a path relative to the image "
        "folder that stays inside it (not absolute, no '..')"
    )
