"""Bad COCO data is rejected or skipped and counted, never used (issue 12, item 7).

Each test writes a COCO-format folder by hand, with real JPEG / PNG / TIFF files written by PIL
and the quirks of real data: non-contiguous category ids, images of different sizes, polygons
and both RLE encodings, 16-bit grayscale PNGs (PIL mode ``I;16``).
"""

import json
import re
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from modfuse import ContextViews
from modfuse.data import CocoContext
from modfuse.data.coco.dataset import read_image
from tests.data.test_coco_instances import uncompressed_rle

DOG, PERSON = 18, 1
H, W = 48, 64  # image 139
GOOD = {"id": 101, "image_id": 139, "category_id": DOG, "segmentation": [[4, 6, 30, 6, 30, 40]]}


def rle_of(mask: np.ndarray, compressed: bool) -> dict:
    """COCO's RLE of ``mask``: ``counts`` as a string, or as run lengths (column-major)."""
    if compressed:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}
    return uncompressed_rle(mask)


def ann(aid: int, segmentation, image_id: int = 139, **kw) -> dict:
    return {
        "id": aid,
        "image_id": image_id,
        "category_id": DOG,
        "segmentation": segmentation,
        "area": 100.0,
        "bbox": [0.0, 0.0, 10.0, 10.0],
        "iscrowd": 0,
        **kw,
    }


def write_coco(root, annotations, images=None, pixels=None):
    """A COCO folder: ``train2017/`` (image 139 as JPEG, 285 as PNG) and its instances JSON."""
    (root / "train2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    if images is None:
        images = [
            {"id": 139, "file_name": "000000000139.jpg", "height": H, "width": W, "license": 1},
            {"id": 285, "file_name": "000000000285.png", "height": 40, "width": 40, "license": 1},
        ]
    for img in images:
        path = root / "train2017" / img["file_name"]
        if not path.exists():
            px = rng.integers(40, 200, (img["height"], img["width"], 3), dtype=np.uint8)
            Image.fromarray(px).save(path, quality=95)
    for name, image in (pixels or {}).items():
        image.save(root / "train2017" / name)
    data = {
        "info": {"description": "hand-written COCO folder with bad data", "version": "1.0"},
        "licenses": [{"id": 1, "name": "test", "url": ""}],
        "images": images,
        "annotations": [{**ann(0, None), **a} for a in annotations],
        "categories": [
            {"supercategory": "person", "id": PERSON, "name": "person"},
            {"supercategory": "animal", "id": DOG, "name": "dog"},
        ],
    }
    ann_file = root / "annotations" / "instances_train2017.json"
    ann_file.write_text(json.dumps(data))
    return root / "train2017", ann_file


def build(root, annotations, **kw) -> CocoContext:
    return CocoContext(*write_coco(root, annotations), one_per_image=False, size=24, **kw)


# ------------------------------------------------------------------ annotation-level problems
def test_rle_of_another_size_than_its_image_is_a_counted_skip(tmp_path):
    box = np.zeros((H, W), dtype=np.uint8)
    box[10:30, 20:50] = 1
    bad = [
        ann(201, rle_of(box.T, compressed=False)),  # height and width swapped
        ann(202, rle_of(np.ones((40, 40), np.uint8), compressed=True)),  # the other image's size
    ]
    with pytest.warns(UserWarning) as record:
        data = build(tmp_path, [GOOD, *bad])
    message = next(str(w.message) for w in record if "rle_size_mismatch" in str(w.message))
    assert "instances_train2017.json" in message and "[201, 202]" in message
    assert data.skipped["rle_size_mismatch"] == 2
    assert data.skipped_ids["rle_size_mismatch"] == [201, 202]
    assert [a["id"] for a in data.items] == [101]
    assert data[0]["mask"].shape == (1, H, W)


def test_objects_wholly_outside_the_image_are_counted_skips(tmp_path):
    bad = [
        ann(301, [[70, 5, 90, 5, 90, 20]]),  # right of a 64-pixel-wide image
        ann(302, [[-30, -20, -5, -20, -5, -2]]),  # above and left of it
        ann(303, [[5, 50, 20, 50, 20, 60], [10, 55, 30, 55, 30, 70]]),  # below, two rings
        ann(304, rle_of(np.zeros((H, W), np.uint8), compressed=False)),  # no foreground
        ann(305, rle_of(np.zeros((H, W), np.uint8), compressed=True)),
        ann(306, [[10.1, 10.1, 10.3, 10.1, 10.2, 10.3]]),  # inside, but smaller than a pixel
    ]
    with pytest.warns(
        UserWarning, match=r"empty_mask 6 \(ids \[301, 302, 303, 304, 305\] \.\.\.\)"
    ):
        data = build(tmp_path, [GOOD, *bad])
    assert data.skipped["empty_mask"] == 6
    assert [a["id"] for a in data.items] == [101]


def test_a_mask_that_decodes_empty_is_an_error_naming_file_and_id(tmp_path):
    # Three points on one line: in bounds, a large box, no area: found only when decoded.
    flat = ann(401, [[2, 2, 16, 16, 30, 30]])
    data = build(tmp_path, [GOOD, flat])
    assert [a["id"] for a in data.items] == [101, 401]
    with pytest.raises(
        ValueError,
        match=r"annotation 401 of image file .*000000000139\.jpg: its mask decodes empty",
    ):
        data[1]
    assert data[0]["mask"].sum() > 0  # the others still load


def test_bad_segmentations_are_counted_skips_naming_file_and_ids(tmp_path):
    good_rle = rle_of(np.ones((H, W), np.uint8), compressed=True)
    bad = [
        ann(501, []),  # empty: pycocotools fails with IndexError
        ann(502, [[]]),
        ann(503, [[10, 10, 20, 20]]),  # 2 points: pycocotools reads a box
        ann(504, [[10, 10, 20]]),
        ann(505, [[10, 10, 20, 10, 20, 20, 5]]),  # an odd count: a truncated polygon
        ann(506, [[10, 10, 20, 10, "20", 20]]),
        ann(507, "10 10 20 10 20 20"),  # wrong type
        ann(508, None),
        ann(509, 7),
        ann(510, {"counts": good_rle["counts"]}),  # RLE without size
        ann(511, {"size": [H, W], "counts": [0, 100]}),  # runs cover 100 of 3072 pixels
        ann(512, {"size": [H, W], "counts": good_rle["counts"][:-1] + "z"}),
        ann(513, {"size": [H, W], "counts": rle_of(np.ones((8, 8)), True)["counts"]}),
    ]
    with pytest.warns(UserWarning) as record:
        data = build(tmp_path, [GOOD, *bad])
    message = next(str(w.message) for w in record if "bad_segmentation" in str(w.message))
    ann_file = tmp_path / "annotations" / "instances_train2017.json"
    assert str(ann_file) in message
    assert "bad_segmentation 13 (ids [501, 502, 503, 504, 505] ...)" in message
    assert data.skipped["bad_segmentation"] == 13
    assert data.skipped_ids["bad_segmentation"] == list(range(501, 514))
    assert [a["id"] for a in data.items] == [101]


def test_a_bad_other_instance_is_not_painted_and_does_not_break_the_item(tmp_path):
    # Another dog in the same image, its RLE of the swapped size: it cannot be painted.
    other = np.zeros((H, W), dtype=np.uint8)
    other[5:20, 40:60] = 1
    neighbour = ann(601, rle_of(other.T, compressed=False))
    with pytest.warns(UserWarning, match="rle_size_mismatch 1"):
        data = build(tmp_path, [GOOD, neighbour], views=ContextViews(size=24, hide="mask"))
    item = data[0]
    assert item["ann_id"] == 101 and item["mask"].shape == (1, H, W)
    assert torch.equal(item["image"], read_image(data.image_dir / "000000000139.jpg"))


def test_duplicate_image_ids_are_an_error_naming_id_and_files(tmp_path):
    images = [
        {"id": 139, "file_name": "000000000139.jpg", "height": H, "width": W},
        {"id": 285, "file_name": "000000000285.png", "height": 40, "width": 40},
        {"id": 139, "file_name": "000000000777.jpg", "height": 40, "width": 40},
    ]
    with pytest.raises(
        ValueError,
        match=r"instances_train2017\.json lists image id 139 2 times \(file names "
        r"\['000000000139\.jpg', '000000000777\.jpg'\]\)",
    ):
        CocoContext(*write_coco(tmp_path, [GOOD], images=images))


def test_duplicate_annotation_ids_are_an_error(tmp_path):
    twin = ann(101, [[30, 10, 60, 10, 60, 40]])
    with pytest.raises(ValueError, match=r"lists annotation id 101 2 times"):
        build(tmp_path, [GOOD, twin])


# ------------------------------------------------------------------ image files
def gradient16(h: int = 40, w: int = 40) -> np.ndarray:
    return np.linspace(0, 65535, h * w).round().astype(np.uint16).reshape(h, w)


def test_16bit_png_is_scaled_to_0_1_not_clipped_to_white(tmp_path):
    values = gradient16()
    Image.fromarray(values).save(tmp_path / "depth.png")
    with Image.open(tmp_path / "depth.png") as im:
        assert im.mode == "I;16"  # what PIL makes of a 16-bit grayscale PNG
    image = read_image(tmp_path / "depth.png")
    expected = torch.from_numpy(values.astype(np.float32) / 65535).expand(3, -1, -1)
    assert image.shape == (3, 40, 40)
    torch.testing.assert_close(image, expected, atol=1e-6, rtol=0)
    assert (image == 1).float().mean() < 0.01  # PIL's convert("RGB") makes 99.6% white

    # The same file as a COCO image: the item's pixels are the scaled ones.
    seg = [[5, 5, 30, 5, 30, 30]]
    dog = ann(701, seg, image_id=285)
    (tmp_path / "coco").mkdir()
    pixels = {"000000000285.png": Image.fromarray(values)}
    data = CocoContext(*write_coco(tmp_path / "coco", [dog], pixels=pixels), size=24)
    torch.testing.assert_close(data[0]["image"], expected, atol=1e-6, rtol=0)


def test_16bit_big_endian_and_32bit_integer_files(tmp_path):
    values = gradient16(24, 32)
    big = Image.frombytes("I;16B", (32, 24), values.astype(">u2").tobytes())
    big.save(tmp_path / "big.tif")
    Image.fromarray(values.astype(np.int32)).save(tmp_path / "int.tif")
    expected = torch.from_numpy(values.astype(np.float32) / 65535).expand(3, -1, -1)
    for name, mode in (("big.tif", "I;16B"), ("int.tif", "I")):
        with Image.open(tmp_path / name) as im:
            assert im.mode == mode
        torch.testing.assert_close(read_image(tmp_path / name), expected, atol=1e-6, rtol=0)

    Image.fromarray(np.full((4, 4), 70_000, dtype=np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(ValueError, match=r"wide\.tif is 32-bit integer .* \[70000, 70000\]"):
        read_image(tmp_path / "wide.tif")
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match=r"float\.tif is 32-bit float \(mode 'F'\)"):
        read_image(tmp_path / "float.tif")


def test_8bit_modes_come_out_right(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    torch.testing.assert_close(
        read_image(tmp_path / "l.png"), torch.from_numpy(gray / 255).float().expand(3, -1, -1)
    )

    palette = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30]], dtype=np.uint8)
    index = rng.integers(0, 3, (6, 5), dtype=np.uint8)
    p = Image.fromarray(index, "P")
    p.putpalette(palette.flatten().tolist())
    p.save(tmp_path / "p.png")
    rgb = torch.from_numpy(palette[index] / 255).float().permute(2, 0, 1)
    torch.testing.assert_close(read_image(tmp_path / "p.png"), rgb)

    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    expected = torch.from_numpy(rgba[..., :3] / 255).float().permute(2, 0, 1)
    torch.testing.assert_close(read_image(tmp_path / "rgba.png"), expected)  # alpha dropped

    cmyk = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.tif")
    c = cmyk.astype(np.float64)
    rgb = (255 - c[..., :3]) * (255 - c[..., 3:]) / 255  # PIL's CMYK -> RGB
    expected = torch.from_numpy(rgb / 255).float().permute(2, 0, 1)
    torch.testing.assert_close(read_image(tmp_path / "cmyk.tif"), expected, atol=1 / 255, rtol=0)


def png_bomb(path, side: int) -> None:
    """A valid 1-bit PNG of ``side x side`` black pixels: a few KB on disk, huge decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row * 1000) for _ in range(side // 1000))
    idat += z.compress(row * (side % 1000)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grayscale
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
    path.write_bytes(png + chunk(b"IEND", b""))


def test_decompression_bomb_is_a_clear_error(tmp_path):
    png_bomb(tmp_path / "bomb.png", 20_000)  # 4e8 pixels: over twice PIL's default limit
    assert (tmp_path / "bomb.png").stat().st_size < 200_000
    with pytest.raises(ValueError) as err:
        read_image(tmp_path / "bomb.png")
    message = str(err.value)
    assert "bomb.png" in message and "400000000 pixels" in message
    assert re.search(r"decompression bomb", message)


def test_image_between_one_and_two_times_the_limit_is_refused(tmp_path, monkeypatch):
    # PIL only warns between 1x and 2x its limit, then decodes the whole image.
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match=r"big\.png is too large .*1600 pixels"):
        read_image(tmp_path / "big.png")
