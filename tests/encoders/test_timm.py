"""timm encoders with local weights, including the Places365 checkpoint layout."""

import pickle

import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image, ImageDraw
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
    """torchvision's features of [0, 1] pixels, normalized as its ImageNet weights expect."""
    net.fc = torch.nn.Identity()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return net((x - mean) / std)


def real_looking_image(path) -> Image.Image:
    """A JPEG photo-like scene (sky gradient, ground, objects), not square, saved and re-read."""
    w, h = 320, 250
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sky = np.stack([90 + 80 * yy / h, 140 + 60 * yy / h, 230 - 40 * yy / h], -1)
    img = Image.fromarray(sky.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 170, w, h], fill=(70, 120, 40))  # grass
    draw.ellipse([60, 90, 170, 200], fill=(200, 40, 30), outline=(20, 20, 20), width=3)
    draw.polygon([(200, 190), (250, 80), (300, 190)], fill=(240, 220, 60))
    img.save(path, quality=90)
    return Image.open(path).convert("RGB")


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


def test_features_of_pixels_equal_timms_own_pipeline(tmp_path):
    """[0, 1] pixels in, normalization inside: the same features as timm's eval transform
    (resize, crop, to tensor, normalize with the model's pretrained_cfg) + the network."""
    net = torchvision_resnet18_with_365_classes()
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    enc = TimmEncoder("resnet18", weights=path, freeze=True)
    reference = timm.create_model("resnet18", pretrained=False, num_classes=0)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    reference.load_state_dict(state)
    reference.eval()
    cfg = timm.data.resolve_model_data_config(reference)
    image = real_looking_image(tmp_path / "scene.jpg")
    normalized = timm.data.create_transform(**cfg)(image)[None]  # (1, 3, 224, 224)
    # Without normalize, timm stops at uint8 (PILToTensor): pixels in [0, 1] are that / 255.
    pixels = timm.data.create_transform(**cfg, normalize=False)(image)[None].float() / 255
    assert 0 <= float(pixels.min()) and float(pixels.max()) <= 1  # what modfuse takes
    with torch.no_grad():
        want = reference(normalized)
        got = enc(pixels)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert enc.normalization == {"mean": list(cfg["mean"]), "std": list(cfg["std"])}
    with torch.no_grad():  # and the normalization matters: raw pixels give other features
        assert (reference(pixels) - want).abs().max() > 1e-2


def test_normalization_can_be_set_or_switched_off_and_is_saved(tmp_path):
    from modfuse import FusionModel

    x = torch.rand(2, 3, 32, 32)
    plain = TimmEncoder("resnet18", normalize=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), plain.model(x))
    custom = TimmEncoder("resnet18", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).eval()
    custom.model.load_state_dict(plain.model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(custom(x), plain.model((x - 0.5) / 0.25))
    model = FusionModel(
        {"fg": {"name": "timm:resnet18", "std": [0.2, 0.2, 0.2], "mean": [0.4, 0.4, 0.4]}},
        num_classes=2,
    ).eval()
    model.save(tmp_path / "m")
    config = (tmp_path / "m" / "config.json").read_text()
    assert '"std": [' in config and "0.2" in config
    again = FusionModel.load(tmp_path / "m").eval()
    assert again.encoders["fg"].normalization == {"mean": [0.4] * 3, "std": [0.2] * 3}
    with torch.no_grad():
        assert torch.equal(again({"fg": x}), model({"fg": x}))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mean": (0.5, 0.5), "std": (0.2, 0.2)}, "2 means and 2 stds for an input of 3"),
        ({"mean": (0.5,) * 3, "std": (0.2, 0.0, 0.2)}, "std > 0"),
        ({"mean": (float("nan"),) * 3, "std": (0.2,) * 3}, "std > 0"),
    ],
)
def test_bad_normalization_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TimmEncoder("resnet18", **kwargs)
