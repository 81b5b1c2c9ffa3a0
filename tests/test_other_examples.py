"""The CIFAR-10 example and the reference example's real-COCO path, on data the tests write."""

import csv
import importlib.util
import sys
from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file

from modfuse.data.synthetic import make_synthetic_coco
from tests.data.test_cifar import cifar_root  # noqa: F401  (fixture)

EXAMPLES = Path(__file__).parents[1] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_cifar_example_on_a_cifar_folder(cifar_root, tmp_path):  # noqa: F811
    report = load_example("cifar_context_fusion").main(
        ["--root", str(cifar_root), "--out", str(tmp_path / "out"), "--epochs", "1"]
    )
    with open(report.parent / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["model"] for r in rows} == {"fg_only", "bg_only", "joint", "joint_fg_penalty"}
    assert {r["perturbation"] for r in rows} == {"clean", "fg_blur", "fg_fgsm", "image_fgsm"}
    assert all(r["n"] == "4" for r in rows)  # the fixture's test_batch holds 4 images


def test_reference_example_on_a_coco_folder_with_local_resnet18_checkpoints(tmp_path):
    root = make_synthetic_coco(tmp_path / "coco", n_train=36, n_test=18, size=48)
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18()
    fg = tmp_path / "resnet18_imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in imagenet.state_dict().items()}, str(fg))
    places = torchvision.models.resnet18(num_classes=365)
    bg = tmp_path / "resnet18_places365.pth.tar"
    torch.save(
        {
            "epoch": 90,
            "arch": "resnet18",
            "state_dict": {f"module.{k}": v for k, v in places.state_dict().items()},
        },
        bg,
    )
    summary = load_example("coco_context_fusion").main(
        [
            "--coco-root",
            str(root),
            "--fg-weights",
            str(fg),
            "--bg-weights",
            str(bg),
            "--categories",
            "ball",
            "ring",
            "star",
            "--image-size",
            "48",
            "--view-size",
            "48",
            "--quick",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert list(summary) == ["coco"]
    assert set(summary["coco"]["clean"]) == {
        "fg_only",
        "bg_only",
        "joint",
        "joint_fg_penalty",
        "fg_adv_trained",
    }
    with open(tmp_path / "out" / "report" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["world"] for r in rows} == {"coco"} and all(r["n"] == "9" for r in rows)
