"""The reference example's quick path shows the paper's qualitative results on its own report.

Margins are set from what a working implementation gives (seeded, deterministic on CPU):
joint-vs-foreground gains of about 0.09 (blur) and 0.11 (FGSM) in the distinct world, about
0 in the similar world, and a penalty that moves about 0.25 of the weight norm share.
A broken fusion (joint == foreground only), a background that carries no context, or a
penalty that does nothing fails them.
"""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "coco_context_fusion.py"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("coco_context_fusion", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["coco_context_fusion"] = module
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("reference")
    summary = module.main(["--quick", "--out", str(out)])
    return out, summary


def gain(world: dict, attack: str, model: str = "joint", base: str = "fg_only") -> float:
    return world[attack][model] - world[attack][base]


def test_foreground_model_is_strong_and_joint_loses_nothing_clean(quick_run):
    _, s = quick_run
    d = s["distinct"]
    assert d["clean"]["fg_only"] >= 0.9
    assert d["clean"]["joint"] >= d["clean"]["fg_only"] - 0.02


def test_joint_beats_foreground_under_foreground_attack_in_distinct_world(quick_run):
    _, s = quick_run
    d = s["distinct"]
    assert gain(d, "fg_blur") > 0.05, d["fg_blur"]
    assert gain(d, "fg_fgsm") > 0.05, d["fg_fgsm"]


def test_gain_is_larger_with_distinct_than_similar_contexts(quick_run):
    _, s = quick_run
    for attack in ("fg_blur", "fg_fgsm"):
        assert gain(s["distinct"], attack) > gain(s["similar"], attack) + 0.04, attack
    # In the similar world the background alone is near chance (6 classes).
    assert s["similar"]["clean"]["bg_only"] < 0.35 < s["distinct"]["clean"]["bg_only"]


def test_background_features_shift_far_less_under_foreground_blur(quick_run):
    _, s = quick_run
    shift = s["distinct"]["fg_blur_shift"]
    assert shift["fg"] > 0.1
    assert shift["bg"] < 0.1 * shift["fg"]


def test_penalty_moves_weight_to_context_and_helps_under_attack(quick_run):
    _, s = quick_run
    d = s["distinct"]
    share = d["fg_norm_share"]
    assert share["joint_fg_penalty"] < share["joint"] - 0.1
    for attack in ("fg_blur", "fg_fgsm"):
        assert d[attack]["joint_fg_penalty"] > d[attack]["joint"] + 0.02, attack


def test_report_holds_both_threat_models_and_its_files(quick_run):
    out, _ = quick_run
    report = out / "report"
    for name in [
        "report.md",
        "results.csv",
        "results.json",
        "manifest.json",
        "accuracy_fg_blur.png",
        "accuracy_fg_fgsm.png",
        "accuracy_image_fgsm.png",
        "feature_shift.png",
    ]:
        assert (report / name).is_file(), name
    with open(report / "results.csv") as f:
        rows = list(csv.DictReader(f))
    models = {r["model"] for r in rows}
    assert models == {"fg_only", "bg_only", "joint", "joint_fg_penalty", "fg_adv_trained"}
    raw = {(r["world"], r["model"]) for r in rows if r["perturbation"] == "image_fgsm"}
    assert raw == {(w, m) for w in ("distinct", "similar") for m in models}
    manifest = json.loads((report / "manifest.json").read_text())
    assert manifest["class_map"]["distinct"]["ball"] == 0
    assert manifest["versions"]["torch"]
    text = (report / "report.md").read_text()
    assert "image_fgsm" in text and "Modality reliance" in text
    # Saved models reload.
    from modfuse import FusionModel

    FusionModel.load(out / "models" / "distinct" / "joint")
