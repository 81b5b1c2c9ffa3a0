"""Each sanity flag is raised by a model built to trigger it, and a healthy model raises none."""

import torch
import torch.nn.functional as F
from torch import nn

from modfuse import FusionModel
from modfuse.attacks import FGSM, PGD, GaussianNoise
from modfuse.data import StackedDataset
from modfuse.robustness import Sweep, robustness_sweep

N = 256


class Quantized(nn.Module):
    """A non-differentiable step in front of a Linear: rounding kills the input gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 16)
        self.out_dim = 16

    def forward(self, x):
        return self.linear(torch.round(x * 4) / 4)


class AlwaysDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 16)
        self.out_dim = 16

    def forward(self, x):
        return self.linear(F.dropout(x, 0.5, training=True))  # random even in eval mode


def model_with(encoder=None) -> FusionModel:
    torch.manual_seed(0)
    enc = encoder if encoder is not None else {"name": "mlp", "in_dim": 8, "hidden": [16]}
    model = FusionModel({"fg": enc}, num_classes=3).eval()
    with torch.no_grad():
        model.fusion.bias.zero_()
    return model


def data_labelled_by(model, x=None, labels_from=None) -> StackedDataset:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 8, generator=g) if x is None else x
    with torch.no_grad():
        y = model({"fg": labels_from if labels_from is not None else x}).argmax(1)
    return StackedDataset({"fg": x}, y)


def checks(result) -> set[str]:
    return {f["check"] for f in result.flags}


def test_healthy_model_raises_no_flag():
    model = model_with()
    data = data_labelled_by(model)
    sweeps = [
        Sweep("fgsm", FGSM(targets=("fg",)), [0.1, 0.3]),
        Sweep("pgd", PGD(targets=("fg",), steps=10, seed=0), [0.1, 0.3]),
        Sweep("noise", GaussianNoise(targets=("fg",), seed=0), [0.1, 0.3]),
    ]
    result = robustness_sweep({"healthy": model}, data, sweeps, batch_size=N, progress=False)
    assert result.flags == []
    acc = {(r["perturbation"], r["strength"]): r["accuracy"] for r in result}
    assert acc[("fgsm", 0.3)] < acc[("clean", 0.0)] == 1.0  # the attacks do bite


def test_accuracy_rising_with_strength():
    model = model_with()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 8, generator=g)
    # Labels that the model gets right only on the strongest noise: accuracy rises with it.
    noisy = GaussianNoise(std=3.0, targets=("fg",), seed=0)(
        model, {"fg": x}, torch.zeros(N, dtype=torch.long)
    )
    data = data_labelled_by(model, x, labels_from=noisy["fg"])
    sweep = Sweep("noise", GaussianNoise(targets=("fg",), seed=0), [1.0, 3.0])
    result = robustness_sweep({"m": model}, data, [sweep], batch_size=N, progress=False)
    assert "accuracy_rises_with_strength" in checks(result)


def test_iterative_weaker_than_single_step():
    model = model_with()
    data = data_labelled_by(model)
    weak_pgd = PGD(targets=("fg",), steps=1, alpha=0.001, random_start=False)  # misconfigured
    sweeps = [Sweep("fgsm", FGSM(targets=("fg",)), [0.3]), Sweep("pgd", weak_pgd, [0.3])]
    result = robustness_sweep({"m": model}, data, sweeps, batch_size=N, progress=False)
    # The crippled PGD is also weaker than random noise; nothing else is wrong.
    assert checks(result) == {"iterative_weaker_than_single_step", "noise_stronger_than_attack"}
    flag = next(f for f in result.flags if f["check"] == "iterative_weaker_than_single_step")
    assert "PGD" in flag["detail"] and flag["action"]


def test_vanishing_gradient_and_noise_stronger_than_attack():
    model = model_with(Quantized())
    data = data_labelled_by(model)
    sweeps = [Sweep("fgsm", FGSM(targets=("fg",)), [0.3])]
    result = robustness_sweep({"quantized": model}, data, sweeps, batch_size=N, progress=False)
    assert {"vanishing_gradient", "noise_stronger_than_attack"} <= checks(result)
    # The attack looks harmless: exactly the false robustness the flags warn about.
    fgsm = next(r for r in result if r["perturbation"] == "fgsm")
    assert fgsm["accuracy"] == 1.0


def test_stochastic_model():
    model = model_with(AlwaysDropout())
    data = data_labelled_by(model)
    result = robustness_sweep({"dropout": model}, data, [], batch_size=N, progress=False)
    assert checks(result) == {"stochastic_model"}


def test_flags_reach_the_report(tmp_path):
    from modfuse.reporting.report import write_report

    model = model_with(Quantized())
    data = data_labelled_by(model)
    result = robustness_sweep(
        {"q": model},
        data,
        [Sweep("fgsm", FGSM(targets=("fg",)), [0.3])],
        batch_size=N,
        progress=False,
    )
    text = write_report(tmp_path, result).read_text()
    assert "vanishing_gradient" in text and "BPDA" in text


def test_vanishing_gradient_is_flagged_in_every_float_dtype():
    """In float16 the threshold 1e-12 is 0, so a zero gradient was never below it."""
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        model = model_with(Quantized()).to(dtype)
        data = data_labelled_by(model_with(Quantized()))
        sweeps = [Sweep("fgsm", FGSM(targets=("fg",)), [0.3])]
        result = robustness_sweep({"q": model}, data, sweeps, batch_size=N, progress=False)
        assert "vanishing_gradient" in checks(result), dtype
