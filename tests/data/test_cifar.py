"""CIFAR10Context on a CIFAR-format folder written by the test (torchvision's file layout)."""

import pickle

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10

from modfuse.data import CIFAR10Context


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ]:
        n = 4
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": [int(v) for v in rng.integers(0, 10, n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    # The files are ours, not the released ones: skip torchvision's md5 check of them.
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    return tmp_path


def test_items_with_centre_box(cifar_root):
    data = CIFAR10Context(cifar_root, train=True, box_fraction=0.5)
    assert len(data) == 20
    item = data[3]
    assert item["image"].shape == (3, 32, 32) and item["fg"].shape == (3, 32, 32)
    assert item["mask"][0, 8:24, 8:24].all() and item["mask"].sum() == 256
    # fg: the centre box scaled to the full view; bg: the box filled, the rest intact.
    torch.testing.assert_close(
        item["fg"][:, ::2, ::2].mean(), item["image"][:, 8:24, 8:24].mean(), atol=0.05, rtol=0
    )
    fill = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    torch.testing.assert_close(item["bg"][:, 8:24, 8:24], fill.expand(3, 16, 16))
    assert torch.equal(item["bg"][:, :8], item["image"][:, :8])
    assert data.classes[0] == "class0" and 0 <= item["label"] < 10


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        CIFAR10Context(tmp_path / "none")
