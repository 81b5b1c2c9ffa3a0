"""The CIFAR-10 example on data the tests write (the real-COCO path: tests/test_coco_paths.py)."""

import csv
import importlib.util
import sys
from pathlib import Path

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
    # The leak is stated, with the bg-only accuracy that measures it.
    assert "Background-only clean accuracy" in (report.parent / "report.md").read_text()
