"""No stale data: a synthetic world records its settings and is reused only when they match
(issue 12, item 2)."""

import json

import pytest

from modfuse.data import synthetic
from modfuse.data.synthetic import world as synthetic_world

SMALL = {"n_train": 12, "n_test": 6, "size": 32}


def snapshot(root):
    """Every file under ``root`` with its size and modification time (ns)."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_world_json_records_every_setting_that_changes_the_bytes(tmp_path):
    root = synthetic.make_synthetic_coco(tmp_path / "w", contexts="similar", seed=3, **SMALL)
    recorded = json.loads((root / "world.json").read_text())
    assert recorded == {
        "world_format": 1,
        "n_train": 12,
        "n_test": 6,
        "size": 32,
        "contexts": "similar",
        "context_purity": None,
        "seed": 3,
    }
    mapping = {name: ["sky", "water"] for name in synthetic.CLASSES}
    other = synthetic.make_synthetic_coco(tmp_path / "m", contexts=mapping, **SMALL)
    assert json.loads((other / "world.json").read_text())["contexts"] == mapping


def test_absent_or_empty_folder_gets_a_world_and_a_match_is_reused_untouched(tmp_path):
    root = synthetic.ensure_synthetic_world(tmp_path / "absent", **SMALL)
    assert (root / "annotations" / "instances_val2017.json").is_file()
    assert (root / "world.json").is_file()
    (tmp_path / "empty").mkdir()
    assert synthetic.ensure_synthetic_world(tmp_path / "empty", **SMALL) == tmp_path / "empty"
    assert len(list((tmp_path / "empty" / "train2017").iterdir())) == 12

    before = snapshot(root)
    # context_purity None and 0.9 write the same bytes under "distinct": the same world.
    assert synthetic.ensure_synthetic_world(root, context_purity=0.9, **SMALL) == root
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"n_train": 18}, ["n_train: folder has 12, config asks 18"]),
        (
            {"seed": 1, "size": 48},
            ["seed: folder has 0, config asks 1", "size: folder has 32, config asks 48"],
        ),
        (  # the purity is ignored with "similar": recorded as None
            {"contexts": "similar"},
            [
                "contexts: folder has distinct, config asks similar",
                "context_purity: folder has 0.9, config asks None",
            ],
        ),
        ({"context_purity": 0.5}, ["context_purity: folder has 0.9, config asks 0.5"]),
    ],
)
def test_other_settings_are_an_error_listing_each_difference(tmp_path, change, expected):
    root = synthetic.ensure_synthetic_world(tmp_path / "w", **SMALL)
    before = snapshot(root)
    with pytest.raises(ValueError) as err:
        synthetic.ensure_synthetic_world(root, **{**SMALL, **change})
    message = str(err.value)
    for line in expected:
        assert line in message
    assert message.count("folder has") == len(expected)
    assert "delete the folder" in message and "another root" in message
    assert snapshot(root) == before  # nothing rewritten, nothing reused silently


def test_a_world_without_world_json_is_an_error(tmp_path):
    # A world written before world.json existed: the COCO files alone.
    root = synthetic.make_synthetic_coco(tmp_path / "old", **SMALL)
    (root / "world.json").unlink()
    with pytest.raises(ValueError, match=r"has no world\.json: an older or interrupted"):
        synthetic.ensure_synthetic_world(root, **SMALL)


def test_a_killed_generation_is_not_mistaken_for_a_finished_world(tmp_path, monkeypatch):
    root = synthetic.make_synthetic_coco(tmp_path / "w", **SMALL)
    write_split = synthetic_world._write_split  # where make_synthetic_coco looks it up

    def killed_at_val(root_, split, *args):
        if split == "val":
            raise KeyboardInterrupt  # the process dies after the train split
        write_split(root_, split, *args)

    monkeypatch.setattr(synthetic_world, "_write_split", killed_at_val)
    with pytest.raises(KeyboardInterrupt):
        synthetic.make_synthetic_coco(root, **{**SMALL, "n_train": 18})
    monkeypatch.undo()
    assert not (root / "world.json").exists()
    # Neither the old settings nor the new ones may be trusted now.
    for n_train in (12, 18):
        with pytest.raises(ValueError, match="no world.json"):
            synthetic.ensure_synthetic_world(root, **{**SMALL, "n_train": n_train})


def test_a_file_where_the_folder_should_be_is_an_error(tmp_path):
    (tmp_path / "w").write_text("not a folder")
    with pytest.raises(ValueError, match=r"w is a file, not a folder"):
        synthetic.ensure_synthetic_world(tmp_path / "w", **SMALL)


HARD = {"classes": ["moon", "egg", "tee"], "occlusion": 0.3, "clutter": 2, "scale": (0.15, 0.25)}


def test_world_json_records_classes_and_difficulty_that_differ_from_the_defaults(tmp_path):
    root = synthetic.make_synthetic_coco(tmp_path / "w", **SMALL, **HARD)
    recorded = json.loads((root / "world.json").read_text())
    assert recorded == {
        **synthetic.world_settings(**SMALL),
        "classes": ["moon", "egg", "tee"],
        "occlusion": 0.3,
        "clutter": 2,
        "scale": [0.15, 0.25],
    }
    # Settings at their defaults are left out: worlds written before they existed stay valid.
    assert not {"aspect", "noise"} & set(recorded)
    explicit_defaults = {"classes": list(synthetic.CLASSES), "noise": 0.0, "scale": (0.2, 0.3)}
    assert synthetic.world_settings(**SMALL, **explicit_defaults) == synthetic.world_settings(
        **SMALL
    )


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"occlusion": 0.5}, ["occlusion: folder has 0.3, config asks 0.5"]),
        ({"occlusion": 0.0}, ["occlusion: folder has 0.3, config asks 0.0"]),
        ({"noise": 0.05}, ["noise: folder has 0.0, config asks 0.05"]),
        ({"classes": None}, ["classes: folder has ['moon', 'egg', 'tee'], config asks ['ball'"]),
        ({"classes": ["egg", "moon", "tee"]}, ["classes: folder has ['moon', 'egg', 'tee']"]),
    ],
)
def test_a_changed_difficulty_or_class_list_is_an_error_naming_it(tmp_path, change, expected):
    root = synthetic.ensure_synthetic_world(tmp_path / "w", **SMALL, **HARD)
    before = snapshot(root)
    assert synthetic.ensure_synthetic_world(root, **SMALL, **HARD) == root  # the same: reused
    with pytest.raises(ValueError) as err:
        synthetic.ensure_synthetic_world(root, **SMALL, **{**HARD, **change})
    message = str(err.value)
    for line in expected:
        assert line in message
    assert message.count("folder has") == len(expected)
    assert snapshot(root) == before


def test_a_world_recorded_before_the_knobs_existed_is_the_default_world(tmp_path):
    root = synthetic.make_synthetic_coco(tmp_path / "w", **SMALL)
    old_record = {k: v for k, v in json.loads((root / "world.json").read_text()).items()}
    assert set(old_record) == {
        "world_format", "n_train", "n_test", "size", "contexts", "context_purity", "seed"
    }  # fmt: skip
    assert synthetic.ensure_synthetic_world(root, **SMALL, classes=list(synthetic.CLASSES)) == root
    with pytest.raises(ValueError, match="clutter: folder has 0, config asks 1"):
        synthetic.ensure_synthetic_world(root, **SMALL, clutter=1)
