import pytest
import torch

from modfuse.attacks import (
    APGD,
    FGSM,
    PGD,
    DropModality,
    Ensemble,
    GaussianBlur,
    GaussianNoise,
    Square,
    TorchAttacksAdapter,
)
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


def test_a_target_that_is_not_floating_point_names_its_dtype():
    x = fg_bg_batch()
    x["fg"] = (x["fg"] * 255).to(torch.uint8)
    with pytest.raises(
        TypeError, match=r"target 'fg' must be a floating-point tensor, got a torch\.uint8 tensor"
    ):
        FGSM()(fg_bg_model(), x, Y)
    x["fg"] = fg_bg_batch()["fg"].tolist()
    with pytest.raises(TypeError, match=r"floating-point tensor, got list"):
        FGSM()(fg_bg_model(), x, Y)


def test_a_token_attack_on_a_float_input_names_its_dtype():
    from modfuse import FusionModel
    from modfuse.attacks import TokenDrop

    model = FusionModel({"text": {"name": "text_cnn", "vocab_size": 30}}, num_classes=2)
    with pytest.raises(TypeError, match=r"integer tensor \(token ids\), got a torch\.float32"):
        TokenDrop(0.5)(model, {"text": torch.rand(2, 8)}, torch.tensor([0, 1]))


UNTOUCHED = {
    "fgsm": lambda: FGSM(8 / 255),
    "pgd": lambda: PGD(8 / 255, steps=2, seed=0),
    "apgd": lambda: APGD(8 / 255, steps=2, seed=0),
    "square": lambda: Square(8 / 255, queries=5, seed=0),
    "worst_case": lambda: Ensemble.standard(8 / 255, steps=1, restarts=1, queries=3),
    "blur": lambda: GaussianBlur(1.0),
    "noise": lambda: GaussianNoise(0.1, seed=0),
    "drop_bg": lambda: DropModality(targets=("bg",)),
    "torchattacks": lambda: TorchAttacksAdapter("FGSM", "fg", eps=8 / 255),
}


@pytest.mark.parametrize("name", UNTOUCHED)
def test_float64_inputs_keys_not_targeted_come_back_as_the_very_same_tensors(name):
    model = fg_bg_model().eval()  # float32 weights
    x = {k: v.double() for k, v in fg_bg_batch().items()}
    y = model({k: v.float() for k, v in x.items()}).argmax(1)  # right on all: all attacked
    attack = UNTOUCHED[name]()
    out = attack(model, x, y)
    for k in x:
        if k in attack.targets:
            continue
        assert out[k] is x[k], f"{k} came back as a copy ({out[k].dtype})"
    if name == "fgsm":
        (swept,) = attack.sweep(model, x, y, [4 / 255])
        assert swept["bg"] is x["bg"]


def test_float32_inputs_of_a_float64_model_come_back_moved_but_exact():
    model = fg_bg_model().double().eval()
    x = fg_bg_batch()
    out = PGD(8 / 255, steps=1, seed=0)(model, x, Y)
    # Widening keeps every value: the untouched key follows the model, bit for bit.
    assert out["bg"].dtype == torch.float64 and torch.equal(out["bg"], x["bg"].double())
    same = {k: v.double() for k, v in x.items()}
    assert PGD(8 / 255, steps=1, seed=0)(model, same, Y)["bg"] is same["bg"]


def test_a_range_given_as_a_list_is_the_same_range_as_a_tuple():
    # YAML gives [low, high]; the sanity probes key their noise on the range (a list is
    # unhashable there).
    from modfuse.attacks import FGSM

    listed, tupled = (
        FGSM(targets=("a",), ranges={"a": [-2, 2]}),
        FGSM(targets=("a",), ranges={"a": (-2, 2)}),
    )
    x = torch.zeros(3, 4)
    assert listed.range_of("a", x) == tupled.range_of("a", x) == (-2.0, 2.0)
    hash(listed.range_of("a", x))
