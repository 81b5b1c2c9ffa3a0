"""Every registered attack: bounds, ranges, untouched keys, model state, zero strength."""

import pytest
import torch

from modfuse._registry import ATTACKS
from modfuse.attacks import (
    APGD,
    FGSM,
    PGD,
    DropModality,
    Ensemble,
    GaussianBlur,
    GaussianNoise,
    Square,
)
from tests.attacks.common import fg_bg_batch, fg_bg_model

EPS = 8 / 255
# name -> (factory with a strength, norm bound or None, factory at zero strength or None)
ATTACK_CASES = {
    "fgsm": (lambda t: FGSM(eps=EPS, targets=t), ("linf", EPS), lambda t: FGSM(eps=0, targets=t)),
    "pgd_linf": (
        lambda t: PGD(eps=EPS, steps=3, targets=t, seed=0),
        ("linf", EPS),
        lambda t: PGD(eps=0, steps=3, targets=t),
    ),
    "pgd_l2": (
        lambda t: PGD(eps=0.5, steps=3, norm="l2", targets=t, seed=0),
        ("l2", 0.5),
        lambda t: PGD(eps=0, norm="l2", targets=t),
    ),
    "blur": (
        lambda t: GaussianBlur(sigma=1.5, targets=t),
        None,
        lambda t: GaussianBlur(0, targets=t),
    ),
    "blur_random_sigma": (lambda t: GaussianBlur(sigma=(0.5, 3.0), targets=t, seed=0), None, None),
    "noise": (
        lambda t: GaussianNoise(std=0.1, targets=t, seed=0),
        None,
        lambda t: GaussianNoise(0, targets=t),
    ),
    "drop": (lambda t: DropModality(targets=t), None, None),
    "apgd": (
        lambda t: APGD(eps=EPS, steps=3, targets=t, seed=0),
        ("linf", EPS),
        lambda t: APGD(eps=0, steps=3, targets=t, seed=0),
    ),
    "square": (
        lambda t: Square(eps=EPS, queries=20, targets=t, seed=0),
        ("linf", EPS),
        lambda t: Square(eps=0, queries=20, targets=t, seed=0),
    ),
    "worst_case": (
        lambda t: Ensemble.standard(EPS, targets=t, steps=2, queries=10),
        ("linf", EPS),
        lambda t: Ensemble.standard(0, targets=t, steps=2, queries=10),
    ),
    "torchattacks_pgd": (
        lambda t: ATTACKS.create(
            {
                "name": "torchattacks",
                "attack": "PGD",
                "target": t[0],
                "eps": EPS,
                "alpha": 2 / 255,
                "steps": 3,
            }
        ),
        ("linf", EPS),
        None,
    ),
}
TARGETS = [("fg",), ("fg", "bg")]
CASES = [
    (n, t)
    for n in ATTACK_CASES
    for t in TARGETS
    if not (n.startswith("torchattacks") and len(t) > 1)
]


def test_every_registered_attack_is_covered():
    # Text attacks (token ids) are covered in test_text_attacks.py.
    covered = {
        "fgsm",
        "pgd",
        "blur",
        "noise",
        "drop",
        "torchattacks",
        "embedding_pgd",
        "token_substitution",
        "token_drop",
        "apgd",
        "square",
        "worst_case",
    }
    assert set(ATTACKS.names()) <= covered | set(ATTACKS.names("user_*"))


@pytest.mark.parametrize("name,targets", CASES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_attack_invariants(name, targets, mode):
    make, bound, _ = ATTACK_CASES[name]
    model = fg_bg_model()
    model.train(mode == "train")
    # Leave a known gradient on one parameter: the attack must not add to it.
    params = list(model.parameters())
    params[0].grad = torch.full_like(params[0], 0.25)
    x = fg_bg_batch()
    labels = torch.tensor([0, 1, 2, 0])
    out = make(targets)(model, x, labels)

    assert model.training == (mode == "train"), "model mode not restored"
    assert torch.equal(params[0].grad, torch.full_like(params[0], 0.25))
    assert all(p.grad is None for p in params[1:]), "attack accumulated parameter gradients"
    for k in x:
        if k not in targets:
            assert out[k] is x[k], f"untouched key {k} was replaced"
    for k in targets:
        if name == "drop":
            assert k not in out
            continue
        assert out[k].shape == x[k].shape
        assert out[k].min() >= 0 and out[k].max() <= 1, "left the valid range"
        assert not torch.equal(out[k], x[k]), f"{name} did not change {k}"
        delta = (out[k] - x[k]).flatten(1)
        if bound is not None and bound[0] == "linf":
            assert delta.abs().max() <= bound[1] + 1e-6
        if bound is not None and bound[0] == "l2":
            assert delta.norm(dim=1).max() <= bound[1] + 1e-6
    # The inputs themselves are never modified in place.
    assert torch.equal(x["fg"], fg_bg_batch()["fg"])


@pytest.mark.parametrize("name", [n for n, c in ATTACK_CASES.items() if c[2] is not None])
def test_zero_strength_returns_the_input(name):
    model = fg_bg_model()
    x = fg_bg_batch()
    out = ATTACK_CASES[name][2](("fg", "bg"))(model, x, torch.tensor([0, 1, 2, 0]))
    for k in x:
        assert torch.equal(out[k], x[k]), k


def test_per_key_eps():
    model = fg_bg_model()
    x = fg_bg_batch()
    out = FGSM(eps={"fg": 8 / 255, "bg": 2 / 255}, targets=("fg", "bg"))(
        model, x, torch.zeros(4, dtype=torch.long)
    )
    assert (out["fg"] - x["fg"]).abs().max() > 3 / 255
    assert (out["bg"] - x["bg"]).abs().max() <= 2 / 255 + 1e-6
    with pytest.raises(KeyError, match="eps has no value for target 'bg'"):
        FGSM(eps={"fg": 0.1}, targets=("fg", "bg"))(model, x, torch.zeros(4, dtype=torch.long))


def test_seeded_random_parameters_repeat():
    model = fg_bg_model()
    x = fg_bg_batch()
    y = torch.tensor([0, 1, 2, 0])
    a = PGD(eps=EPS, steps=2, seed=3)(model, x, y)["fg"]
    b = PGD(eps=EPS, steps=2, seed=3)(model, x, y)["fg"]
    c = PGD(eps=EPS, steps=2, seed=4)(model, x, y)["fg"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pgd_is_stronger_than_fgsm_and_targeted_mode_moves_towards_target():
    model = fg_bg_model().eval()
    x = fg_bg_batch(16)
    y = model(x).argmax(1)
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        l_fgsm = loss(model(FGSM(eps=0.03)(model, x, y)), y)
        l_pgd = loss(model(PGD(eps=0.03, steps=10, seed=0)(model, x, y)), y)
        target = (y + 1) % 3
        l_target = loss(
            model(PGD(eps=0.03, steps=10, targeted=True, seed=0)(model, x, target)), target
        )
        l_target_clean = loss(model(x), target)
    assert l_pgd >= l_fgsm > loss(model(x), y)
    assert l_target < l_target_clean


def test_early_stop_stops_moving_fooled_samples():
    model = fg_bg_model().eval()
    x = fg_bg_batch(8)
    y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 3  # already misclassified: early stop must leave them untouched
    out = PGD(eps=EPS, steps=5, random_start=False, early_stop=True)(model, x, y)
    assert torch.equal(out["fg"][:4], x["fg"][:4])
    assert not torch.equal(out["fg"][4:], x["fg"][4:])
