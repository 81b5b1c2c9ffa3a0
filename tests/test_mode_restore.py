"""Attacks, sweeps and diagnostics give back every submodule's mode exactly as they found it."""

import pytest
import torch

from modfuse import FusionModel
from modfuse.attacks import FGSM, Attack, GaussianNoise
from modfuse.data import FeatureCache, StackedDataset
from modfuse.modes import eval_mode, preserved_modes
from modfuse.robustness import Sweep, feature_shift, modality_reliance, robustness_sweep
from modfuse.robustness.sanity import check_model


def user_model() -> FusionModel:
    """Training mode, except the background encoder the user froze by putting it in eval."""
    torch.manual_seed(0)
    fg = {"name": "mlp", "in_dim": 6, "hidden": [8, 4], "dropout": 0.3}
    bg = {"name": "mlp", "in_dim": 6, "hidden": [8, 4]}
    model = FusionModel({"fg": fg, "bg": bg}, num_classes=3).train()
    model.encoders["bg"].eval()
    return model


def modes(model: torch.nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def data(n: int = 10) -> StackedDataset:
    g = torch.Generator().manual_seed(1)
    return StackedDataset(
        {"fg": torch.rand(n, 6, generator=g), "bg": torch.rand(n, 6, generator=g)},
        torch.randint(0, 3, (n,), generator=g),
    )


class Broken(Attack):
    def perturb(self, ctx, x):
        raise RuntimeError("broken attack")


def batch():
    d = data()
    return dict(d.tensors), d.labels


OPERATIONS = {
    "attack": lambda m, tmp: FGSM(0.1)(m, *batch()),
    "attack_keep_mode": lambda m, tmp: FGSM(0.1, model_mode="keep")(m, *batch()),
    "fgsm_sweep": lambda m, tmp: FGSM().sweep(m, *batch(), [0.1, 0.2]),
    "robustness_sweep": lambda m, tmp: robustness_sweep(
        {"m": m},
        data(),
        [Sweep("fgsm", FGSM(), [0.1]), Sweep("noise", GaussianNoise(seed=0), [0.1])],
        batch_size=4,
        progress=False,
    ),
    "feature_shift": lambda m, tmp: feature_shift(m, data(), GaussianNoise(seed=0)),
    "modality_reliance": lambda m, tmp: modality_reliance(m, data()),
    "feature_cache": lambda m, tmp: FeatureCache(tmp, progress=False).features(m, data()),
    "feature_cache_attacked": lambda m, tmp: FeatureCache(tmp, progress=False).features(
        m, data(), perturbation=FGSM(0.1)
    ),
    "check_model": lambda m, tmp: check_model("m", m, *batch(), [(FGSM(), 0.1)]),
}


@pytest.mark.parametrize("run", OPERATIONS.values(), ids=OPERATIONS.keys())
def test_every_submodule_keeps_its_mode(run, tmp_path):
    model = user_model()
    before = modes(model)
    assert before["encoders.fg.net.2"] and not before["encoders.bg.net.0"]  # dropout / frozen
    run(model, tmp_path)
    assert modes(model) == before


def test_modes_come_back_after_an_exception_inside_an_attack():
    model = user_model()
    before = modes(model)
    with pytest.raises(RuntimeError, match="broken attack"):
        Broken()(model, *batch())
    assert modes(model) == before


def test_eval_mode_sets_eval_inside_and_handles_shared_modules():
    model = user_model()
    other = torch.nn.Sequential(model.encoders["fg"])  # shares the encoder
    before = modes(model)
    with pytest.raises(ValueError, match="inside"), eval_mode(model, other):
        assert not any(m.training for m in model.modules())
        raise ValueError("inside")
    assert modes(model) == before and other.training
    with preserved_modes(model):
        model.eval()
    assert modes(model) == before
    with pytest.raises(TypeError, match="torch.nn.Module"), eval_mode("model"):
        pass
