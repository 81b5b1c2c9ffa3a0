"""Units a careless user gets wrong (issue 21, item 11): ``eps=8`` meant as 8/255.

An L-inf radius is in the units of its target's range: at most 1 on [0, 1] pixels (a target
without a declared range is taken as pixels), at most the range's width on a declared range,
unbounded where the range is declared None. L2 radii have no fixed upper bound.
"""

import pytest
import torch
from pydantic import ValidationError

from modfuse.attacks import APGD, FGSM, PGD, Ensemble, Square, TorchAttacksAdapter
from modfuse.config.schema import load_config
from modfuse.robustness import Sweep
from tests.attacks.common import fg_bg_batch, fg_bg_model

HINT = r"eps 8 is an L-inf radius on \[0, 1\] pixels; did you mean 8/255 = 0\.0314\?"

LINF = {
    "fgsm": lambda eps, **kw: FGSM(eps, **kw),
    "pgd": lambda eps, **kw: PGD(eps, steps=1, **kw),
    "apgd": lambda eps, **kw: APGD(eps, steps=1, **kw),
    "square": lambda eps, **kw: Square(eps, queries=2, **kw),
    "worst_case": lambda eps, **kw: Ensemble([FGSM(**kw), Square(queries=2, **kw)], eps=eps),
}


@pytest.mark.parametrize("name", LINF)
def test_an_linf_eps_above_one_on_pixels_is_refused_at_construction(name):
    with pytest.raises(ValueError, match=HINT):
        LINF[name](8)
    LINF[name](1.0)  # the whole range: allowed
    LINF[name](8 / 255)


@pytest.mark.parametrize("name", LINF)
def test_with_strength_refuses_it_too(name):
    attack = LINF[name](8 / 255)
    with pytest.raises(ValueError, match=HINT):
        attack.with_strength(8)
    assert attack.with_strength(16 / 255).eps == 16 / 255


def test_a_sweep_refuses_it_naming_the_sweep():
    with pytest.raises(ValueError, match="sweep 'x': strengths: " + HINT):
        Sweep("x", {"name": "fgsm", "targets": ["fg"]}, [8])
    assert Sweep("x", {"name": "fgsm", "targets": ["fg"]}, [8 / 255]).strengths == [8 / 255]


def test_a_config_refuses_it_at_load(tmp_path):
    head = "model: {encoders: {fg: small_cnn}, num_classes: 3}\n"
    path = tmp_path / "c.yaml"
    path.write_text(
        head + "eval: {sweeps: [{name: x, attack: {name: fgsm, targets: [fg]}, strengths: [8]}]}\n"
    )
    with pytest.raises(ValidationError, match="did you mean 8/255 = 0.0314"):
        load_config(path)
    path.write_text(head + "train: {adversarial: {name: pgd, eps: 8, targets: [fg]}}\n")
    with pytest.raises(ValidationError, match="did you mean 8/255 = 0.0314"):
        load_config(path)


def test_a_per_key_eps_names_the_key_and_far_too_large_gets_no_hint():
    with pytest.raises(ValueError, match=r"eps 8 is an L-inf .* for target 'bg'"):
        FGSM({"fg": 8 / 255, "bg": 8}, targets=("fg", "bg"))
    with pytest.raises(ValueError, match=r"eps 300 is an L-inf radius on \[0, 1\] pixels\. It"):
        PGD(300)


def test_a_declared_range_sets_the_bound_to_its_width():
    FGSM(8, ranges={"fg": (0, 255)})  # 8 on 0-255 images: fine
    with pytest.raises(ValueError, match=r"declared range is \[0, 255\]; it must be in \[0, 255\]"):
        FGSM(300, ranges={"fg": (0, 255)})
    with pytest.raises(ValueError, match=r"must be in \[0, 2\]"):
        PGD(3, ranges={"fg": (-1, 1)})
    assert PGD(3, ranges={"fg": None}).eps == 3  # declared unbounded: any radius
    # One eps for two targets must fit both.
    with pytest.raises(ValueError, match="for target 'bg'"):
        FGSM(8, targets=("fg", "bg"), ranges={"fg": (0, 255)})
    # The declared range is what the attack runs with: 8 on 0-255 images moves them by 8.
    x = {k: v * 255 for k, v in fg_bg_batch().items()}
    out = FGSM(8, ranges={"fg": (0, 255)})(fg_bg_model(), x, torch.tensor([0, 1, 2, 0]))
    assert float((out["fg"] - x["fg"]).abs().max()) == pytest.approx(8)


def test_l2_and_other_units_keep_no_fixed_upper_bound():
    assert PGD(8, norm="l2").with_strength(50).eps == 50
    assert APGD(8, norm="l2").eps == 8
    pgd = PGD(8 / 255)
    pgd_l2 = PGD(8 / 255, norm="l2")
    assert pgd_l2.with_strength(12.0).eps == 12.0
    with pytest.raises(ValueError, match=HINT):
        pgd.with_strength(8)


def test_torchattacks_adapter_refuses_it_too():
    with pytest.raises(ValueError, match=HINT):
        TorchAttacksAdapter("PGD", "fg", eps=8, steps=1)
    attack = TorchAttacksAdapter("PGD", "fg", eps=8 / 255, steps=1)
    with pytest.raises(ValueError, match=HINT):
        attack.with_strength(8)
    assert TorchAttacksAdapter("PGDL2", "fg", eps=8, steps=1).with_strength(20).kwargs["eps"] == 20
