"""timm encoders with local weights, including the Places365 checkpoint layout."""

import pickle

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from modfuse.encoders.timm import TimmEncoder


def torchvision_resnet18_with_365_classes() -> torch.nn.Module:
    torch.manual_seed(1)
    net = torchvision.models.resnet18(num_classes=365)
    # Non-trivial BatchNorm statistics, so that a key mix-up could not go unnoticed.
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return net.eval()


def reference_features(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.fc = torch.nn.Identity()
    with torch.no_grad():
        return net(x)


def test_loads_places365_layout_and_matches_torchvision(tmp_path):
    net = torchvision_resnet18_with_365_classes()
    # The released Places365 files: {"epoch", "arch", "state_dict": {"module.<key>": ...}}.
    ckpt = {
        "epoch": 90,
        "arch": "resnet18",
        "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
    }
    path = tmp_path / "resnet18_places365.pth.tar"
    torch.save(ckpt, path)
    enc = TimmEncoder("resnet18", weights=path, freeze=True)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        got = enc(x)
    assert enc.out_dim == 512 and got.shape == (2, 512)
    torch.testing.assert_close(got, reference_features(net, x), atol=1e-5, rtol=1e-5)


def test_loads_safetensors_weights(tmp_path):
    net = torchvision_resnet18_with_365_classes()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    enc = TimmEncoder("resnet18", weights=path).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), reference_features(net, x), atol=1e-5, rtol=1e-5)


class Payload:
    def __reduce__(self):
        return (print, ("code ran while loading weights",))


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"conv1.weight": Payload()}}, f)
    with pytest.raises(ValueError, match="refusing to load .*evil.pth"):
        TimmEncoder("resnet18", weights=path)


def test_weights_of_another_architecture_are_rejected(tmp_path):
    path = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(ValueError, match="do not fit this backbone: 0 missing keys"):
        TimmEncoder("resnet18", weights=path)


def test_freeze_keeps_eval_mode_and_no_grads():
    enc = TimmEncoder("resnet18", freeze=True)
    enc.train()
    assert not enc.model.training
    assert not any(p.requires_grad for p in enc.parameters())


def test_unknown_timm_model():
    with pytest.raises(KeyError, match="timm has no model 'resnet18x'"):
        TimmEncoder("resnet18x")
