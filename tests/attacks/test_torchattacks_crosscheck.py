"""modfuse FGSM / PGD equal torchattacks' on a single-modality model (to 1e-6)."""

import pytest
import torch
import torchattacks  # a dev dependency: the cross-check must run, never skip

from modfuse import FusionModel
from modfuse.attacks import FGSM, PGD, TorchAttacksAdapter


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = FusionModel(
        {"img": {"name": "small_cnn", "width": 8, "depth": 2}}, num_classes=5
    ).eval()
    x = torch.rand(6, 3, 20, 20)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    single = torch.nn.Sequential()  # a one-input view of the same model for torchattacks
    single.forward = lambda t: model({"img": t})
    single.add_module("model", model)
    return model, single, x, y


def test_fgsm_matches(setup):
    model, single, x, y = setup
    ours = FGSM(eps=8 / 255, targets=("img",))(model, {"img": x}, y)["img"]
    theirs = torchattacks.FGSM(single, eps=8 / 255)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert not torch.equal(ours, x)


@pytest.mark.parametrize("steps", [1, 7])
def test_pgd_without_random_start_matches(setup, steps):
    model, single, x, y = setup
    ours = PGD(eps=8 / 255, alpha=2 / 255, steps=steps, random_start=False, targets=("img",))(
        model, {"img": x}, y
    )["img"]
    theirs = torchattacks.PGD(single, eps=8 / 255, alpha=2 / 255, steps=steps, random_start=False)(
        x, y
    )
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_adapter_runs_torchattacks_on_one_modality():
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 4, "depth": 2}
    model = FusionModel({"fg": enc, "bg": enc}, num_classes=3).eval()
    x = {"fg": torch.rand(4, 3, 16, 16), "bg": torch.rand(4, 3, 16, 16)}
    y = torch.tensor([0, 1, 2, 0])
    via_adapter = TorchAttacksAdapter(
        "PGD", target="fg", eps=8 / 255, alpha=2 / 255, steps=4, random_start=False
    )(model, x, y)
    native = PGD(eps=8 / 255, alpha=2 / 255, steps=4, random_start=False)(model, x, y)
    assert via_adapter["bg"] is x["bg"]
    torch.testing.assert_close(via_adapter["fg"], native["fg"], atol=1e-6, rtol=0)
