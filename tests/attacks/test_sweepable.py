"""Sweeps move what the attack uses (issue 13): noise by SNR, torchattacks by eps, blur ranges."""

import math

import pytest
import torch
import yaml

from modfuse import FusionModel
from modfuse._registry import ATTACKS
from modfuse.attacks import GaussianBlur, GaussianNoise, TorchAttacksAdapter
from tests.attacks.common import fg_bg_batch, fg_bg_model, fit_full_batch

Y4 = torch.tensor([0, 1, 2, 0])


def rms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).pow(2).mean(1).sqrt()


# ---------------------------------------------------------------- GaussianNoise(snr_db=...)
def test_snr_sweep_changes_the_noise_and_it_falls_as_snr_rises():
    model = FusionModel({"a": {"name": "mlp", "in_dim": 256}}, num_classes=2)
    x = {"a": torch.randn(8, 256, generator=torch.Generator().manual_seed(0))}
    y = torch.zeros(8, dtype=torch.long)
    attack = GaussianNoise(snr_db=0.0, targets=("a",), seed=0)
    assert (attack.strength_param, attack.strength_unit) == ("snr_db", "snr_db")
    assert attack.stronger_when == "lower"
    snrs = [0.0, 10.0, 20.0, 30.0]
    noise = [out["a"] - x["a"] for out in attack.sweep(model, x, y, snrs)]
    levels = [float(rms(n).mean()) for n in noise]
    assert all(a > b for a, b in zip(levels, levels[1:])), levels
    for snr, n in zip(snrs, noise):
        measured = 20 * torch.log10(rms(x["a"]) / rms(n))
        assert torch.allclose(measured, torch.full_like(measured, snr), atol=1.5), (snr, measured)


def test_snr_strength_may_be_negative_but_must_be_a_finite_number():
    attack = GaussianNoise(snr_db=10.0)
    assert attack.with_strength(-5.0).snr_db == -5.0
    assert attack.snr_db == 10.0  # a copy, not the original
    with pytest.raises(ValueError, match="snr_db must be a finite number, got nan"):
        attack.with_strength(math.nan)
    with pytest.raises(TypeError, match="snr_db must be a number of dB, got dict"):
        attack.with_strength({"fg": 3.0})
    with pytest.raises(ValueError, match="std must be >= 0"):
        GaussianNoise(std=0.1).with_strength(-1.0)  # std mode keeps its own check


# ---------------------------------------------------------------- TorchAttacksAdapter
def test_adapter_sweeps_its_eps_with_kwargs_of_its_own():
    attack = TorchAttacksAdapter("FGSM", "fg", eps=0.01)
    assert attack.strength_param == "eps"
    other = attack.with_strength(0.05)
    assert other.kwargs == {"eps": 0.05} and attack.kwargs == {"eps": 0.01}
    assert other.kwargs is not attack.kwargs
    model = fg_bg_model().eval()
    x = fg_bg_batch()
    outs = attack.sweep(model, x, Y4, [0.01, 0.05])
    sizes = [float((o["fg"] - x["fg"]).abs().max()) for o in outs]
    assert sizes[0] == pytest.approx(0.01, abs=1e-6) and sizes[1] == pytest.approx(0.05, abs=1e-6)


def test_adapter_without_eps_has_no_strength_and_says_how_to_get_one():
    attack = TorchAttacksAdapter("CW", "fg", steps=2)
    assert attack.strength_param is None
    with pytest.raises(TypeError, match=r"pass eps=\.\.\. among its arguments; got \['steps'\]"):
        attack.with_strength(0.1)
    with pytest.raises(TypeError, match="takes eps as one number"):
        TorchAttacksAdapter("PGD", eps=0.1).with_strength(torch.tensor([0.1, 0.2]))


def fg_world(n: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """3 classes told apart by a noisy template in an 8x8 image."""
    templates = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(123)) * 2 - 1
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    fg = (0.5 + 0.2 * templates[y] + 0.15 * torch.randn(n, 3, 8, 8, generator=g)).clamp(0, 1)
    return {"fg": fg}, y


@pytest.fixture(scope="module")
def fg_only() -> FusionModel:
    torch.manual_seed(0)
    model = FusionModel({"fg": {"name": "small_cnn", "width": 8, "depth": 2}}, num_classes=3)
    x, y = fg_world(256, seed=0)
    return fit_full_batch(model, x, y, steps=40)


def test_adapter_targeted_moves_predictions_towards_the_labels(fg_only):
    x, y = fg_world(32, seed=1)
    target = (y + 1) % 3
    attack = TorchAttacksAdapter("PGD", "fg", targeted=True, eps=0.2, alpha=0.04, steps=10)
    assert attack.targeted
    with torch.no_grad():
        clean_hits = float((fg_only(x).argmax(1) == target).float().mean())
        adv = fg_only(attack(fg_only, x, target))
    hits = float((adv.argmax(1) == target).float().mean())
    # Measured: 0.03 of the clean predictions are the target, 1.0 of the attacked ones.
    assert clean_hits <= 0.1 and hits >= clean_hits + 0.5, (clean_hits, hits)


def test_adapter_seed_repeats_its_random_start_and_leaves_the_global_rng_alone():
    model = fg_bg_model().eval()
    x = fg_bg_batch()

    def run(seed):
        return TorchAttacksAdapter("PGD", "fg", seed=seed, eps=0.1, steps=1, alpha=0.0)(
            model, x, Y4
        )["fg"]

    state = torch.get_rng_state()
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_adapter_passes_its_seed_to_attacks_that_take_one(fg_only):
    # One modality: torchattacks' APGD attacks a subset of the batch, which a model holding
    # other modalities of the full batch fixed cannot take.
    attack = TorchAttacksAdapter("APGD", "fg", seed=5, eps=0.1, steps=2)
    assert attack.seed == 5 and "seed" not in attack.kwargs
    x, y = fg_world(8, seed=1)
    assert torch.equal(attack(fg_only, x, y)["fg"], attack(fg_only, x, y)["fg"])


@pytest.mark.parametrize("model_mode", ["eval", "keep"])
def test_adapter_restores_every_submodule_mode(model_mode):
    # torchattacks calls model.train() on the model it was given when that was training.
    model = fg_bg_model().train()
    model.encoders["bg"].eval()  # a frozen encoder inside a training model
    before = [m.training for m in model.modules()]
    seen = []
    model.register_forward_pre_hook(lambda m, _: seen.append(m.training))
    attack = TorchAttacksAdapter("PGD", "fg", eps=0.1, steps=2, model_mode=model_mode)
    attack(model, fg_bg_batch(), Y4)
    assert [m.training for m in model.modules()] == before
    if model_mode == "eval":
        assert seen and not any(seen), "the attack ran the model in training mode"


# ---------------------------------------------------------------- GaussianBlur sigma ranges
def test_blur_sigma_range_from_yaml_list():
    spec = yaml.safe_load("name: blur\nsigma: [0.5, 2.0]\nseed: 0\n")
    attack = ATTACKS.create(spec)
    assert attack.sigma == (0.5, 2.0)
    model = fg_bg_model()
    x = fg_bg_batch()
    out = attack(model, x, Y4)
    assert out["fg"].shape == x["fg"].shape and not torch.equal(out["fg"], x["fg"])
    assert torch.equal(out["fg"], GaussianBlur(sigma=(0.5, 2.0), seed=0)(model, x, Y4)["fg"])
    assert GaussianBlur().with_strength([1.0, 3.0]).sigma == (1.0, 3.0)


@pytest.mark.parametrize(
    "sigma,error,match",
    [
        ([0.5, 1.0, 2.0], ValueError, r"\(low, high\), two numbers, got 3"),
        ([1.0], ValueError, r"two numbers, got 1"),
        ([2.0, 0.5], ValueError, "low <= high"),
        ([0.5, math.inf], ValueError, "finite"),
        ([-1.0, 2.0], ValueError, ">= 0"),
        ([0.5, "2"], TypeError, "two numbers"),
    ],
)
def test_bad_blur_sigma_range_is_refused(sigma, error, match):
    with pytest.raises(error, match=match):
        GaussianBlur(sigma=sigma)
