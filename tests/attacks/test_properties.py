"""Hypothesis: the attack invariants hold over random shapes, strengths and targets."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modfuse import FusionModel
from modfuse.attacks import FGSM, PGD, GaussianBlur, GaussianNoise

MODEL_CACHE: dict = {}


def model_for(channels: int) -> FusionModel:
    if channels not in MODEL_CACHE:
        torch.manual_seed(channels)
        enc = {"name": "small_cnn", "in_channels": channels, "width": 4, "depth": 2}
        MODEL_CACHE[channels] = FusionModel(
            {"fg": enc, "bg": enc, "vec": {"name": "mlp", "in_dim": 5, "hidden": [4]}},
            num_classes=3,
        )
    return MODEL_CACHE[channels]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 5),
    channels=st.sampled_from([1, 3]),
    size=st.integers(6, 20),
    eps=st.floats(0, 0.3),
    kind=st.sampled_from(["fgsm", "pgd_linf", "pgd_l2", "blur", "noise"]),
    targets=st.sets(st.sampled_from(["fg", "bg", "vec"]), min_size=1),
    seed=st.integers(0, 2**16),
)
def test_invariants(batch, channels, size, eps, kind, targets, seed):
    model = model_for(channels)
    g = torch.Generator().manual_seed(seed)
    x = {
        "fg": torch.rand(batch, channels, size, size, generator=g),
        "bg": torch.rand(batch, channels, size, size, generator=g),
        "vec": torch.randn(batch, 5, generator=g),
    }
    y = torch.randint(0, 3, (batch,), generator=g)
    if kind == "blur":
        targets = targets - {"vec"} or {"fg"}  # blur is for images
    targets = tuple(sorted(targets))
    attack = {
        "fgsm": lambda: FGSM(eps=eps, targets=targets),
        "pgd_linf": lambda: PGD(eps=eps, steps=2, targets=targets, seed=seed),
        "pgd_l2": lambda: PGD(eps=eps, steps=2, norm="l2", targets=targets, seed=seed),
        "blur": lambda: GaussianBlur(sigma=eps * 10, targets=targets),
        "noise": lambda: GaussianNoise(std=eps, targets=targets, seed=seed),
    }[kind]()
    out = attack(model, x, y)
    for k in x:
        if k not in targets:
            assert out[k] is x[k]
            continue
        assert out[k].shape == x[k].shape
        if k != "vec":  # images: declared range (0, 1); vectors: unbounded
            assert out[k].min() >= 0 and out[k].max() <= 1
        delta = (out[k] - x[k]).flatten(1)
        if kind in ("fgsm", "pgd_linf"):
            assert delta.abs().max() <= eps + 1e-6
        if kind == "pgd_l2":
            assert delta.norm(dim=1).max() <= eps + 1e-5
        if eps == 0:
            assert torch.equal(out[k], x[k])
