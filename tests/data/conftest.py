"""A small synthetic COCO folder, written once per test session by the generator."""

from pathlib import Path

import pytest

from modfuse.data.synthetic import make_synthetic_coco


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory) -> Path:
    return make_synthetic_coco(tmp_path_factory.mktemp("coco"), n_train=60, n_test=24, size=32)


def split(root: Path, name: str = "train") -> tuple[Path, Path]:
    return root / f"{name}2017", root / "annotations" / f"instances_{name}2017.json"
