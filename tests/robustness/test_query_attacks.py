"""A gradient-free attack that queries the model (Square) is run against each model, and cached
per model: unlike blur or noise, its result depends on the model it queries."""

import torch

from modfuse import FusionModel
from modfuse.attacks import GaussianBlur, Square
from modfuse.data import FeatureCache, StackedDataset
from modfuse.robustness import Sweep, robustness_sweep


def models_and_data():
    torch.manual_seed(0)
    cnn = {"name": "small_cnn", "width": 4, "depth": 2}
    a = FusionModel({"fg": cnn}, num_classes=3).eval()
    b = FusionModel({"fg": cnn}, num_classes=3).eval()
    g = torch.Generator().manual_seed(0)
    data = StackedDataset({"fg": torch.rand(12, 3, 8, 8, generator=g)}, torch.arange(12) % 3)
    return a, b, data


def test_square_runs_against_every_model_and_blur_once(monkeypatch):
    a, b, data = models_and_data()
    calls = {"Square": [], "GaussianBlur": []}
    for cls in (Square, GaussianBlur):
        original = cls.sweep

        def spy(self, model, *args, _original=original, **kwargs):
            calls[type(self).__name__].append(id(model))
            return _original(self, model, *args, **kwargs)

        monkeypatch.setattr(cls, "sweep", spy)
    sweeps = [
        Sweep("square", Square(queries=5, targets=("fg",), seed=0), [8 / 255]),
        Sweep("blur", GaussianBlur(targets=("fg",)), [1.0]),
    ]
    robustness_sweep({"a": a, "b": b}, data, sweeps, batch_size=12, progress=False, sanity=False)
    assert sorted(calls["Square"]) == sorted([id(a), id(b)])  # queried each model
    assert len(calls["GaussianBlur"]) == 1  # a corruption: once for both


def test_square_features_are_cached_per_model(tmp_path):
    a, b, data = models_and_data()
    square = Square(eps=8 / 255, queries=5, targets=("fg",), seed=0)
    cache = FeatureCache(tmp_path, progress=False)
    assert cache.key(a, "fg", data, square) != cache.key(b, "fg", data, square)
    blur = GaussianBlur(1.0, targets=("fg",))
    b.load_state_dict(a.state_dict())
    b.fusion.branch("fg").weight.data += 1  # same encoder, another head
    assert cache.key(a, "fg", data, blur) == cache.key(b, "fg", data, blur)
    assert cache.key(a, "fg", data, square) != cache.key(b, "fg", data, square)
