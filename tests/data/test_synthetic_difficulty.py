"""The harder synthetic world (issue 13, item 5): difficulty knobs, other classes, and the
defaults still writing the bytes they wrote before the knobs existed."""

import hashlib
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from modfuse.data import CocoContext
from modfuse.data.synthetic import (
    CATALOGUE,
    CLASSES,
    PRETRAIN_CLASSES,
    REFERENCE_DIFFICULTY,
    Difficulty,
    make_synthetic_coco,
    render_sample,
)
from modfuse.data.synthetic import world as synthetic_world
from tests.data.conftest import split
from tests.data.test_synthetic import tree_hashes

# Digests of what the generator wrote before the difficulty knobs existed (WORLD_FORMAT 1),
# computed with that generator: the defaults must keep writing exactly this.
RENDER_DIGEST = "5e87bf989c767c2bed6ee325a39ee1e2ecf4d5f550e8e81be872480de99d3a6a"
ANNOTATION_DIGESTS = {
    "train": "24436dd019907b2ee4c630a40e3121c98a1fffea602774b6df3b33ba840675d5",
    "val": "9517b2e824e0aa30eafd0275faf2ce4c11b3e11e7b14c1f82325dbbaebdea668",
}


def render(seed, difficulty=None, cls=0, scene=0, size=48):
    return render_sample(
        cls, scene, size, np.random.default_rng(seed), difficulty, list(PRETRAIN_CLASSES)
    )


def decoded(ann, size):
    seg = ann["segmentation"]
    rles = mask_utils.frPyObjects(seg, size, size) if isinstance(seg, list) else [seg]
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def test_defaults_write_the_bytes_of_world_format_1(tmp_path):
    h = hashlib.sha256()
    for i in range(12):
        pixels, ann = render_sample(i % 6, (i * 5) % 6, 32, np.random.default_rng([7, i]))
        h.update(pixels.tobytes())
        h.update(json.dumps(ann, sort_keys=True).encode())
    assert h.hexdigest() == RENDER_DIGEST
    root = make_synthetic_coco(tmp_path, n_train=12, n_test=6, size=32, contexts="similar", seed=3)
    for name, digest in ANNOTATION_DIGESTS.items():
        data = (root / "annotations" / f"instances_{name}2017.json").read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name


def test_hard_world_same_settings_same_bytes(tmp_path):
    kw = dict(n_train=12, n_test=6, size=32, classes=PRETRAIN_CLASSES, **REFERENCE_DIFFICULTY)
    a, b = make_synthetic_coco(tmp_path / "a", **kw), make_synthetic_coco(tmp_path / "b", **kw)
    c = make_synthetic_coco(tmp_path / "c", **{**kw, "noise": 0.1})
    assert tree_hashes(a) == tree_hashes(b)
    different = {k for k, v in tree_hashes(a).items() if tree_hashes(c)[k] != v}
    assert len(different) == 12 + 6 + 1  # every image and world.json; annotations unchanged


def test_classes_subset_writes_those_categories_only(tmp_path):
    names = ["tee", "ball", "moon"]
    root = make_synthetic_coco(tmp_path, n_train=9, n_test=3, size=32, classes=names)
    for name in ("train", "val"):
        coco = json.loads(split(root, name)[1].read_text())
        assert coco["categories"] == [
            {"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(names)
        ]
        assert {a["category_id"] for a in coco["annotations"]} == {1, 2, 3}
    data = CocoContext(*split(root))
    assert data.classes == names
    assert [data.classes[data[i]["label"]] for i in range(3)] == names  # balanced, in order


def test_pretrain_classes_are_disjoint_from_the_default_ones():
    assert len(CATALOGUE) == 12 and len(PRETRAIN_CLASSES) == 6
    assert not set(PRETRAIN_CLASSES) & set(CLASSES)
    assert len({CATALOGUE[c] for c in CATALOGUE}) == 12  # no two classes look alike


@pytest.mark.parametrize(
    "classes, match",
    [(["ball", "yacht"], "unknown: \\['yacht'\\]"), (["ball", "ball"], "distinct"), ([], "got")],
)
def test_bad_classes_are_an_error(tmp_path, classes, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_coco(tmp_path, 6, 0, size=32, classes=classes)


def test_clutter_needs_classes_outside_the_world(tmp_path):
    with pytest.raises(ValueError, match="uses all 12"):
        make_synthetic_coco(tmp_path, 6, 0, size=32, classes=list(CATALOGUE), clutter=1)


def test_clutter_is_drawn_from_the_classes_the_world_does_not_annotate(tmp_path, monkeypatch):
    seen = []

    def spy(cls, scene, size, rng, difficulty=None, distractors=()):
        seen.append(list(distractors))
        return render_sample(cls, scene, size, rng, difficulty, distractors)

    # Patched where make_synthetic_coco looks it up (modfuse.data.synthetic re-exports it).
    monkeypatch.setattr(synthetic_world, "render_sample", spy)
    make_synthetic_coco(tmp_path, 6, 0, size=32, clutter=2)
    assert seen and all(d == list(PRETRAIN_CLASSES) for d in seen)


@pytest.mark.parametrize(
    "knobs, match",
    [
        ({"occlusion": 0.95}, "occlusion must be in \\[0, 0.9\\].*got 0.95"),
        ({"noise": -0.1}, "noise must be in \\[0, 1\\], got -0.1"),
        ({"clutter": 1.5}, "clutter must be an int >= 0, got 1.5"),
        ({"scale": (0.3, 0.2)}, "scale must be \\(lo, hi\\).*got scale=\\(0.3, 0.2\\)"),
        ({"scale": (0.2, 0.4), "aspect": 0.3}, "e\\^aspect < 0.48"),
    ],
)
def test_bad_knobs_are_an_error_naming_expected_and_got(tmp_path, knobs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_coco(tmp_path, 6, 0, size=32, **knobs)


def test_each_knob_changes_the_pixels():
    base, _ = render(1)
    for knobs in ({"scale": (0.1, 0.15)}, {"aspect": 0.3}, {"occlusion": 0.5}, {"clutter": 2}):
        assert not np.array_equal(render(1, Difficulty(**knobs))[0], base), knobs
    # Noise is drawn last: the same object, the same annotation, pixels moved by about sigma.
    noisy, ann = render(1, Difficulty(noise=0.05))
    assert ann == render(1)[1]
    diff = noisy.astype(float) - base
    assert 0.03 * 255 < diff.std() < 0.06 * 255


def test_scale_and_aspect_change_the_object():
    small = [render(i, Difficulty(scale=(0.1, 0.12)))[1]["area"] for i in range(20)]
    large = [render(i)[1]["area"] for i in range(20)]
    assert max(small) < min(large)
    ratios = [
        w / h for _, _, w, h in (render(i, Difficulty(aspect=0.4))[1]["bbox"] for i in range(40))
    ]
    plain = [w / h for _, _, w, h in (render(i)[1]["bbox"] for i in range(40))]
    assert np.std(np.log(ratios)) > 1.5 * np.std(np.log(plain))


def test_occlusion_hides_about_the_drawn_fraction_and_the_mask_is_the_visible_part():
    hidden = []
    for i in range(60):
        _, full = render(i, cls=i % 6)
        _, occluded = render(i, Difficulty(occlusion=0.6), cls=i % 6)
        whole, visible = decoded(full, 48), decoded(occluded, 48)
        assert visible.any() and not (visible & ~whole).any()  # a part of the same object
        hidden.append(1 - visible.sum() / whole.sum())
    assert max(hidden) <= 0.6 + 0.05  # ties on the bar's edge may hide a few pixels more
    assert 0.2 < np.mean(hidden) < 0.4  # uniform in [0, 0.6]: mean 0.3


def test_hard_world_annotations_decode_to_masks_that_match_bbox_and_area(tmp_path):
    root = make_synthetic_coco(tmp_path, n_train=36, n_test=0, size=48, **REFERENCE_DIFFICULTY)
    coco = COCO(str(split(root)[1]))
    kinds = set()
    for ann in coco.dataset["annotations"]:
        mask = coco.annToMask(ann)
        kinds.add(type(ann["segmentation"]).__name__)
        assert mask.sum() == ann["area"] > 0
        rle = mask_utils.encode(np.asfortranarray(mask))
        assert list(mask_utils.toBbox(rle)) == ann["bbox"]
    assert "dict" in kinds  # occluded objects are RLE, whatever their shape


def test_views_see_the_object_and_scene_of_a_hard_world(tmp_path):
    root = make_synthetic_coco(tmp_path, n_train=12, n_test=0, size=48, **REFERENCE_DIFFICULTY)
    data = CocoContext(*split(root), size=32)
    item = data[0]
    assert item["fg"].shape == item["bg"].shape == (3, 32, 32)
    assert 0 < item["mask"].mean() < 0.5


def test_command_line_writes_the_reference_difficulty(tmp_path):
    from modfuse.data.synthetic.preview import main

    main(["--root", str(tmp_path), "--n-train", "6", "--n-test", "0", "--size", "32"])
    assert "occlusion" not in json.loads((tmp_path / "world.json").read_text())
    main(["--root", str(tmp_path / "hard"), "--n-train", "6", "--n-test", "0", "--size", "32",
          "--reference-difficulty"])  # fmt: skip
    recorded = json.loads((tmp_path / "hard" / "world.json").read_text())
    assert recorded["occlusion"] == REFERENCE_DIFFICULTY["occlusion"]
