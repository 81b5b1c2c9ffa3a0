import pytest
import torch

from modfuse.attacks import FGSM, PGD, GaussianBlur, GaussianNoise
from tests.attacks.common import fg_bg_batch, fg_bg_model

Y = torch.tensor([0, 1, 2, 0])


def test_negative_strengths():
    with pytest.raises(ValueError, match="eps must be >= 0"):
        FGSM(eps=-0.1)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        PGD(eps={"fg": 0.1, "bg": -1})
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        GaussianBlur(sigma=-1)
    with pytest.raises(ValueError, match="std must be >= 0"):
        GaussianNoise(std=-0.5)


def test_values_outside_declared_range():
    x = fg_bg_batch()
    x["fg"] = x["fg"] * 255
    with pytest.raises(
        ValueError,
        match=r"target 'fg' has values in \[.*\], outside its declared range \(0.0, 1.0\)",
    ):
        FGSM()(fg_bg_model(), x, Y)
    # A declared range makes the same input acceptable.
    out = FGSM(eps=2, ranges={"fg": (0, 255)})(fg_bg_model(), x, Y)
    assert out["fg"].max() <= 255


def test_nan_and_inf_inputs():
    x = fg_bg_batch()
    x["fg"][0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="input .fg. holds [0-9]+ NaN or inf"):
        PGD(steps=1)(fg_bg_model(), x, Y)


def test_nan_in_an_untouched_input_is_caught_too():
    x = fg_bg_batch()
    x["bg"][1, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="input .bg. holds [0-9]+ NaN or inf"):
        PGD(steps=1, targets=("fg",))(fg_bg_model(), x, Y)


def test_target_the_model_does_not_take():
    with pytest.raises(
        KeyError, match=r"target 'audio' is not an input of the model; it takes \['bg', 'fg'\]"
    ):
        FGSM(targets=("audio",))(fg_bg_model(), fg_bg_batch(), Y)
    with pytest.raises(KeyError, match="target 'image' is not an input"):
        FGSM(targets=("image",))(fg_bg_model(), fg_bg_batch(), Y)


def test_labels_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"labels must be a tensor of shape \(4,\), got \(3,\)"):
        FGSM()(fg_bg_model(), fg_bg_batch(), torch.tensor([0, 1, 2]))


def test_region_key_missing():
    with pytest.raises(KeyError, match="region key 'mask' missing"):
        GaussianBlur(sigma=1, region="mask")(fg_bg_model(), fg_bg_batch(), Y)


def test_blur_of_a_vector_is_refused():
    from modfuse import FusionModel

    model = FusionModel({"vec": {"name": "mlp", "in_dim": 5}}, num_classes=2)
    with pytest.raises(ValueError, match=r"blur needs images \(B, C, H, W\), got shape \(2, 5\)"):
        GaussianBlur(sigma=1, targets=("vec",))(
            model, {"vec": torch.rand(2, 5)}, torch.tensor([0, 1])
        )
