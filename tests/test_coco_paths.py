"""The real-COCO paths on a COCO-layout folder the test writes, with ResNet-18 checkpoint files:
`modfuse run examples/configs/coco_resnet18.yaml` (paths edited) and the reference example
with `--coco-root`. Both stream the data (nothing is stacked in memory) and train the heads on
features from the on-disk cache, since every encoder is frozen."""

import csv
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from safetensors.torch import save_file

from modfuse.cli.commands import main as modfuse_main
from modfuse.data import StackedDataset
from modfuse.data.synthetic import make_synthetic_coco

ROOT = Path(__file__).parents[1]
CLASSES = ["ball", "ring", "star"]


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """A COCO 2017 layout folder and an ImageNet and a Places365-layout ResNet-18 file."""
    tmp = tmp_path_factory.mktemp("coco_paths")
    root = make_synthetic_coco(tmp / "coco", n_train=36, n_test=18, size=48)
    torch.manual_seed(0)
    fg = tmp / "resnet18_imagenet.safetensors"
    save_file(
        {k: v.contiguous() for k, v in torchvision.models.resnet18().state_dict().items()}, str(fg)
    )
    places = torchvision.models.resnet18(num_classes=365).state_dict()
    bg = tmp / "resnet18_places365.pth.tar"
    torch.save(
        {
            "epoch": 90,
            "arch": "resnet18",
            "state_dict": {f"module.{k}": v for k, v in places.items()},
        },
        bg,
    )
    return root, fg, bg


@pytest.fixture
def no_stacking(monkeypatch):
    """Fail any attempt to hold a dataset in memory."""

    def refuse(*args, **kwargs):
        raise AssertionError("a real-COCO path stacked a dataset in memory")

    monkeypatch.setattr(StackedDataset, "from_dataset", classmethod(refuse))


def test_modfuse_run_of_the_coco_config_uses_the_cache(coco, tmp_path, capsys, no_stacking):
    root, fg, bg = coco
    cfg = yaml.safe_load((ROOT / "examples/configs/coco_resnet18.yaml").read_text())
    cfg["data"].update(root=str(root), categories=CLASSES, image_size=48)
    cfg["model"]["encoders"]["fg"]["weights"] = str(fg)
    cfg["model"]["encoders"]["bg"]["weights"] = str(bg)
    cfg["model"].update(num_classes=3, views={"size": 48})
    cfg["train"].update(epochs=2, batch_size=16)
    cfg["eval"]["batch_size"] = 8
    path = tmp_path / "coco.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert modfuse_main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "every encoder is frozen" in said
    # One entry per modality and split: fg and bg for train and test.
    entries = sorted(p.name.split("-")[0] for p in (out / "cache").glob("*.safetensors"))
    assert entries == ["bg", "bg", "fg", "fg"]
    with open(out / "report" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["perturbation"] for r in rows} == {"clean", "fg_blur", "fg_fgsm"}
    assert {r["n"] for r in rows} == {"9"}  # the 18 test images, one of the 3 classes each


def test_modfuse_run_without_frozen_encoders_says_it_runs_them(coco, tmp_path, capsys):
    root, _, _ = coco
    cfg = yaml.safe_load((ROOT / "examples/configs/quick_synthetic.yaml").read_text())
    cfg["data"] = {"kind": "coco", "root": str(root), "categories": CLASSES, "image_size": 48}
    cfg["model"]["num_classes"] = 3
    cfg["train"]["epochs"] = 1
    cfg["eval"]["sweeps"] = cfg["eval"]["sweeps"][:1]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert modfuse_main(["run", str(path), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert "are trained: no feature cache" in capsys.readouterr().out
    assert not (tmp_path / "r" / "cache").exists()


def load_example():
    spec = importlib.util.spec_from_file_location(
        "coco_context_fusion", ROOT / "examples/coco_context_fusion.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["coco_context_fusion"] = module
    spec.loader.exec_module(module)
    return module


def test_reference_example_streams_real_coco_and_caches_features(coco, tmp_path, no_stacking):
    root, fg, bg = coco
    argv = [
        "--coco-root",
        str(root),
        "--fg-weights",
        str(fg),
        "--bg-weights",
        str(bg),
        "--categories",
        *CLASSES,
        "--image-size",
        "48",
        "--view-size",
        "48",
        "--quick",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "out"),
    ]
    summary = load_example().main(argv)
    assert set(summary) == {"coco", "claims", "seeds"} and summary["seeds"] == [0]
    models = {"fg_only", "bg_only", "joint", "joint_fg_penalty", "fg_adv_trained"}
    assert set(summary["coco"]["clean"]) == models
    with open(tmp_path / "out" / "report" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["world"] for r in rows} == {"coco"} and {r["n"] for r in rows} == {"9"}
    cache = sorted(p.name.split("-")[0] for p in (tmp_path / "out" / "cache").glob("*"))
    assert cache == ["bg", "bg", "fg", "fg"]


def test_cache_takes_the_datasets_views_when_they_match_and_gets_the_same_features(coco, tmp_path):
    from modfuse import ContextViews, FusionModel
    from modfuse.data import FeatureCache
    from modfuse.data.coco.dataset import coco_splits

    root, _, _ = coco
    views = ContextViews(size=48)
    train, _ = coco_splits(root, views=views, categories=CLASSES, image_size=48)
    torch.manual_seed(0)
    cnn = {"name": "small_cnn", "width": 4, "depth": 2, "freeze": True}
    model = FusionModel({"fg": cnn, "bg": cnn}, num_classes=3, views=views).eval()
    fast = FeatureCache(tmp_path / "a", progress=False).features(model, train)
    # The same model with other views settings recomputes them from the raw image.
    other = FusionModel({"fg": cnn, "bg": cnn}, num_classes=3, views=ContextViews(size=48))
    other.load_state_dict(model.state_dict())
    other.views.margin = 0.1 + 1e-9  # another config: the dataset's views do not serve
    slow = FeatureCache(tmp_path / "b", progress=False).features(other.eval(), train)
    for m in ("fg", "bg"):
        torch.testing.assert_close(fast.features[m], slow.features[m], atol=1e-5, rtol=1e-5)
