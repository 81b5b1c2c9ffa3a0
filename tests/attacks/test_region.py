"""``region``: the attacker paints only the mask's pixels of the raw image (issue 13)."""

import pytest
import torch

from modfuse.attacks import (
    APGD,
    FGSM,
    PGD,
    Ensemble,
    GaussianBlur,
    GaussianNoise,
    Square,
    TokenDrop,
    TorchAttacksAdapter,
)
from tests.attacks.common import fg_bg_model, fit_full_batch, raw_batch

EPS = 8 / 255
Y = torch.tensor([0, 1, 2])
# name -> (factory, L-inf bound inside the region or None)
REGION_CASES = {
    "fgsm": (lambda: FGSM(EPS, targets=("image",), region="mask"), EPS),
    "pgd_linf": (lambda: PGD(EPS, steps=4, targets=("image",), region="mask", seed=0), EPS),
    "pgd_l2": (
        lambda: PGD(0.5, steps=4, norm="l2", targets=("image",), region="mask", seed=0),
        None,
    ),
    "apgd_linf": (lambda: APGD(EPS, steps=4, targets=("image",), region="mask", seed=0), EPS),
    "apgd_l2": (
        lambda: APGD(0.5, steps=4, norm="l2", targets=("image",), region="mask", seed=0),
        None,
    ),
    "square": (lambda: Square(EPS, queries=30, targets=("image",), region="mask", seed=0), EPS),
    "ensemble": (
        lambda: Ensemble.standard(EPS, ("image",), steps=2, queries=10, region="mask"),
        EPS,
    ),
    "noise": (lambda: GaussianNoise(0.1, targets=("image",), region="mask", seed=0), None),
    "blur": (lambda: GaussianBlur(2.0, targets=("image",), region="mask"), None),
    "torchattacks_pgd": (
        lambda: TorchAttacksAdapter("PGD", "image", region="mask", eps=EPS, steps=3, seed=0),
        EPS,
    ),
}


def split(delta: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    inside = (mask > 0.5).expand_as(delta)
    return delta[inside], delta[~inside]


@pytest.mark.parametrize("name", REGION_CASES)
def test_fusion_model_with_views_changes_only_the_masked_pixels(name):
    make, bound = REGION_CASES[name]
    model = fg_bg_model(views=True).eval()
    x = raw_batch()
    # Labels the model gets right: every attack (the ensemble too) has samples to work on.
    y = model(x).argmax(1)
    out = make()(model, x, y)
    assert out["mask"] is x["mask"], "the region's mask was replaced"
    inside, outside = split(out["image"] - x["image"], x["mask"])
    assert torch.equal(outside, torch.zeros_like(outside)), f"{name} moved pixels outside"
    assert inside.abs().max() > 1e-3, f"{name} did not move the object"
    if bound is not None:
        assert inside.abs().max() <= bound + 1e-6


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.5)])
@pytest.mark.parametrize("make", [PGD, APGD])
def test_one_step_spends_the_whole_budget_inside_the_region(toy, make, norm, eps):
    # The gradient is masked before an L2 step is normalised: one step of size eps from the
    # clean input lands on the sphere of radius eps inside the region. Normalised on the
    # whole image (the toy reads all of it), it would reach only eps * |grad in| / |grad|.
    x, y = toy_world(8, seed=1)
    kw = {"alpha": eps} if make is PGD else {}  # APGD's first step is 2 eps, projected
    attack = make(
        eps, steps=1, norm=norm, random_start=False, targets=("image",), region="mask", **kw
    )
    delta = attack(toy, x, y)["image"] - x["image"]
    inside, outside = split(delta, x["mask"])
    assert torch.equal(outside, torch.zeros_like(outside))
    size = delta.flatten(1).abs().amax(1) if norm == "linf" else delta.flatten(1).norm(dim=1)
    assert torch.all(size <= eps + 1e-5), size
    assert torch.all(size >= 0.9 * eps), size


def test_random_start_is_confined():
    model = fg_bg_model(views=True).eval()
    x = raw_batch(16)
    y = torch.zeros(16, dtype=torch.long)
    for norm, eps in (("linf", EPS), ("l2", 0.5)):
        start = PGD(eps, steps=1, alpha=0.0, norm=norm, targets=("image",), region="mask", seed=0)
        delta = start(model, x, y)["image"] - x["image"]
        inside, outside = split(delta, x["mask"])
        assert torch.equal(outside, torch.zeros_like(outside)), norm
        if norm == "l2":
            # Radii drawn in [0, eps] inside the region; a direction drawn on the whole image
            # and cut to it would keep about sqrt(120 / 576) = 0.46 of each.
            assert float(delta.flatten(1).norm(dim=1).max()) > 0.7 * eps


def test_fgsm_sweep_with_region_equals_one_call_per_strength():
    model = fg_bg_model(views=True).eval()
    x = raw_batch()
    attack = FGSM(targets=("image",), region="mask")
    swept = attack.sweep(model, x, Y, [2 / 255, 8 / 255])
    for eps, out in zip([2 / 255, 8 / 255], swept):
        one = attack.with_strength(eps)(model, x, Y)
        assert torch.equal(out["image"], one["image"])
        inside, outside = split(out["image"] - x["image"], x["mask"])
        assert torch.equal(outside, torch.zeros_like(outside))
        assert inside.abs().max() <= eps + 1e-6


def test_soft_mask_is_inside_above_one_half():
    model = fg_bg_model(views=True).eval()
    x = raw_batch()
    soft = x["mask"] * 0.6 + 0.2  # 0.8 inside, 0.2 outside
    out = FGSM(EPS, targets=("image",), region="mask")(model, {**x, "mask": soft}, Y)
    inside, outside = split(out["image"] - x["image"], x["mask"])
    assert torch.equal(outside, torch.zeros_like(outside))
    assert inside.abs().max() > EPS / 2  # full steps inside, not steps scaled by 0.8


def test_region_errors_name_what_was_expected_and_what_came():
    model = fg_bg_model(views=True).eval()
    x = raw_batch()
    with pytest.raises(KeyError, match=r"region key 'obj' missing.*\['image', 'mask'\]"):
        FGSM(targets=("image",), region="obj")(model, x, Y)
    with pytest.raises(ValueError, match=r"\(3, 1, 12, 12\).*\(3, 3, 24, 24\)"):
        FGSM(targets=("image",), region="mask")(model, {**x, "mask": x["mask"][..., :12, :12]}, Y)
    with pytest.raises(ValueError, match=r"\(3, 3, 24, 24\).*\(3, 3, 24, 24\)"):
        GaussianBlur(targets=("image",), region="mask")(
            model, {**x, "mask": x["mask"].expand(-1, 3, -1, -1)}, Y
        )
    with pytest.raises(ValueError, match="region 'mask' is also a target"):
        FGSM(targets=("image", "mask"), region="mask")
    with pytest.raises(ValueError, match=r"values in \[0, 1\].*got \[0, 2\]"):
        FGSM(targets=("image",), region="mask")(model, {**x, "mask": x["mask"] * 2}, Y)
    with pytest.raises(TypeError, match="region must be an input key"):
        FGSM(targets=("image",), region=1)
    text = {"text": torch.randint(2, 9, (3, 5)), "mask": torch.ones(3, 1, 1, 5)}
    with pytest.raises(ValueError, match="region needs an attack on real-valued images"):
        TokenDrop(targets=("text",), region="mask")(_Passthrough(), text, Y)


def test_ensemble_members_inherit_the_region_and_must_agree():
    ens = Ensemble([PGD(EPS, targets=("image",)), "apgd"], targets=("image",), region="mask")
    assert [m.region for m in ens.members] == ["mask", "mask"]
    assert ens.region == "mask"
    with pytest.raises(ValueError, match="share one region"):
        Ensemble([PGD(EPS, targets=("image",), region="a"), PGD(EPS, targets=("image",))])


class _Passthrough(torch.nn.Module):
    """A model of any inputs: three constant logits (for checks that fail before it runs)."""

    def forward(self, inputs: dict) -> torch.Tensor:
        return torch.zeros(len(next(iter(inputs.values()))), 3)


# ---------------------------------------------------------------- confined vs cut afterwards
class ImageNet(torch.nn.Module):
    """A toy classifier of ``{"image", "mask"}`` that reads the image only."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.Linear(8 * 8 * 8, 3),
        )

    def forward(self, inputs: dict) -> torch.Tensor:
        return self.net(inputs["image"])


def toy_world(n: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """3 classes, each a template over the whole 8x8 image; the mask is a 4x4 square."""
    templates = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(7)) * 2 - 1
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    image = (0.5 + 0.2 * templates[y] + 0.1 * torch.randn(n, 3, 8, 8, generator=g)).clamp(0, 1)
    mask = torch.zeros(n, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1
    return {"image": image, "mask": mask}, y


@pytest.fixture(scope="module")
def toy() -> ImageNet:
    torch.manual_seed(0)
    model = ImageNet()
    x, y = toy_world(256, seed=0)
    return fit_full_batch(model, x, y, steps=60)


# name -> (factory given the region, whether confining must win clearly). An L-inf attack
# ascends by signs, which on this near-linear model are the same inside the mask with or
# without the pixels around it: confined and cut tie, and "at least as effective" is the
# claim. An L2 step normalised on the whole image, or a square drawn anywhere, wastes most of
# the budget outside: there confining must win by far.
CONFINED = {
    "pgd_linf": (lambda r: PGD(0.25, steps=10, targets=("image",), region=r, seed=0), False),
    "apgd_linf": (lambda r: APGD(0.25, steps=10, targets=("image",), region=r, seed=0), False),
    "pgd_l2": (
        lambda r: PGD(2.0, steps=10, norm="l2", targets=("image",), region=r, seed=0),
        True,
    ),
    "square": (lambda r: Square(0.25, queries=100, targets=("image",), region=r, seed=0), True),
}


@pytest.mark.parametrize("name", CONFINED)
def test_confined_attack_beats_an_unconfined_one_cut_to_the_region(toy, name):
    make, clearly = CONFINED[name]
    x, y = toy_world(64, seed=1)
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert float((toy(x).argmax(1) == y).float().mean()) > 0.9
        confined = float(loss(toy(make("mask")(toy, x, y)), y))
        free = make(None)(toy, x, y)
        m = x["mask"] > 0.5
        cut = float(loss(toy({**x, "image": torch.where(m, free["image"], x["image"])}), y))
    # Measured (loss; clean 0.0005): L-inf PGD 0.326 cut / 0.326 confined, APGD 0.278 /
    # 0.333, L2 PGD 0.051 / 2.006, Square 0.0065 / 0.149.
    if clearly:
        assert confined > 2 * cut, (cut, confined)
    else:
        assert confined >= cut - 0.02, (cut, confined)
