import hashlib

import pytest
import torch

from modfuse.data import CocoContext, make_loader
from modfuse.data.synthetic import SCENES, make_synthetic_coco
from tests.data.conftest import split


def tree_hashes(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path):
    a = make_synthetic_coco(tmp_path / "a", n_train=18, n_test=6, size=32, seed=3)
    b = make_synthetic_coco(tmp_path / "b", n_train=18, n_test=6, size=32, seed=3)
    c = make_synthetic_coco(tmp_path / "c", n_train=18, n_test=6, size=32, seed=4)
    ha, hb, hc = tree_hashes(a), tree_hashes(b), tree_hashes(c)
    assert len(ha) == 18 + 6 + 3  # + world.json
    assert ha == hb
    assert ha != hc


def bg_probe_accuracy(root) -> float:
    """A linear classifier on 8x8 thumbnails of the bg view: how much the context tells."""

    def thumbnails(name):
        data = CocoContext(*split(root, name), size=32)
        batch = next(iter(make_loader(data, batch_size=len(data))))
        x = torch.nn.functional.adaptive_avg_pool2d(batch["bg"], 8).flatten(1)
        return x, batch["label"]

    x_train, y_train = thumbnails("train")
    x_test, y_test = thumbnails("val")
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    torch.manual_seed(0)
    clf = torch.nn.Linear(x_train.shape[1], 6)
    opt = torch.optim.Adam(clf.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(clf((x_train - mean) / std), y_train).backward()
        opt.step()
    return float((clf((x_test - mean) / std).argmax(1) == y_test).float().mean())


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    base = tmp_path_factory.mktemp("worlds")
    return {
        c: make_synthetic_coco(base / c, n_train=480, n_test=240, size=32, contexts=c, seed=0)
        for c in ("distinct", "similar")
    }


def test_distinct_background_predicts_the_class_similar_does_not(worlds):
    distinct, similar = bg_probe_accuracy(worlds["distinct"]), bg_probe_accuracy(worlds["similar"])
    # Chance is 1/6; the distinct world's purity is 0.9.
    assert distinct > 0.7, distinct
    assert similar < 0.3, similar


def test_context_purity_and_mapping(tmp_path):
    root = make_synthetic_coco(tmp_path / "p", n_train=60, n_test=0, size=32, context_purity=1.0)
    data = CocoContext(*split(root))
    assert all(data[i]["scene"] == data[i]["label"] for i in range(len(data)))
    mapping = {name: ["road"] for name in data.classes}
    root = make_synthetic_coco(tmp_path / "m", n_train=12, n_test=0, size=32, contexts=mapping)
    data = CocoContext(*split(root))
    assert {data[i]["scene"] for i in range(len(data))} == {SCENES.index("road")}
    with pytest.raises(ValueError, match="unknown scenes"):
        make_synthetic_coco(tmp_path / "x", 6, 0, size=32, contexts={"ball": ["moon"]})
    with pytest.raises(ValueError, match="contexts must be"):
        make_synthetic_coco(tmp_path / "y", 6, 0, size=32, contexts="mixed")


def test_preview_writes_a_png(tmp_path):
    from modfuse.data.synthetic.preview import main

    main(["--preview", str(tmp_path / "p.png")])
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
