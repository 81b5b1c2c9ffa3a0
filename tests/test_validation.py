"""Input checks: one module says what a valid input is; attacks switch the model's per-call
checks off for their own calls only, never by changing the caller's model."""

import threading

import pytest
import torch

from modfuse import FusionModel
from modfuse.attacks import PGD
from modfuse.validation import check_finite, checks_on, labels_of, unchecked


def model_and_batch():
    torch.manual_seed(0)
    enc = {"name": "mlp", "in_dim": 4}
    model = FusionModel({"fg": enc, "bg": enc}, num_classes=3)
    x = {"fg": torch.rand(5, 4), "bg": torch.rand(5, 4)}
    return model, x, torch.tensor([0, 1, 2, 0, 1])


def test_labels_of_a_batch():
    assert labels_of({"label": [2, 0]}).tolist() == [2, 0]
    with pytest.raises(KeyError, match=r"the batch has no 'label'; it has \['fg'\]"):
        labels_of({"fg": torch.zeros(1)})


def test_validation_can_be_skipped_per_call_and_the_model_keeps_its_setting():
    model, x, _ = model_and_batch()
    x["bg"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="modality 'bg' holds 1 NaN or inf"):
        model.encode(x)
    assert model.encode(x, validate=False)["bg"].isnan().any()  # asked not to check: no error
    with unchecked():
        model(x)  # no error inside the block...
    with pytest.raises(ValueError, match="holds 1 NaN"):
        model(x)  # ...and checks are back after it
    assert model.validate is True


def test_unchecked_is_restored_after_an_exception_and_is_per_thread():
    seen = {}
    with pytest.raises(RuntimeError):
        with unchecked():
            seen["inside"] = checks_on(True)
            thread = threading.Thread(target=lambda: seen.update(other=checks_on(True)))
            thread.start()
            thread.join()
            raise RuntimeError("boom")
    assert seen == {"inside": False, "other": True}  # another thread still checks
    assert checks_on(True) and not checks_on(False)


def test_an_attack_skips_the_per_call_checks_without_touching_the_model():
    model, x, y = model_and_batch()
    during = []

    def spy(module, args, out):
        during.append((model.validate, checks_on(model.validate)))

    model.encoders["fg"].register_forward_hook(spy)
    PGD(eps=0.1, steps=3, targets=("fg",), ranges={"fg": (0, 1)})(model, x, y)
    assert during and all(v is True for v, _ in during)  # the caller's flag never moved
    assert all(on is False for _, on in during)  # but its checks were off in the loop
    assert model.validate is True and checks_on(model.validate)
    model(x)  # and a later call checks again
    x["fg"][0, 0] = float("inf")
    with pytest.raises(ValueError, match="modality 'fg' holds 1 NaN or inf"):
        model(x)


def test_an_attack_that_fails_midway_leaves_the_checks_on():
    model, x, y = model_and_batch()

    def boom(*args):
        raise RuntimeError("encoder failed")

    handle = model.encoders["fg"].register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="encoder failed"):
        PGD(eps=0.1, steps=2, targets=("fg",), ranges={"fg": (0, 1)})(model, x, y)
    handle.remove()
    x["bg"][1, 1] = float("nan")
    with pytest.raises(ValueError, match="holds 1 NaN"):
        model(x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_check_finite_finds_one_bad_value_in_every_float_dtype(dtype, bad):
    x = torch.rand(4, 3, 8, 8).to(dtype)
    check_finite("fg", x)  # clean: no error
    x[2, 1, 3, 5] = bad
    with pytest.raises(ValueError, match="modality 'fg' holds 1 NaN or inf values"):
        check_finite("fg", x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_check_finite_accepts_large_values_whose_sum_overflows(dtype):
    """The fast test sums the tensor; a sum that overflows on finite values is no error."""
    big = torch.finfo(dtype).max
    x = torch.full((64, 8), big, dtype=dtype)
    x[1::2] = -big / 2  # +inf - inf would be NaN in a naive sum: still finite values
    check_finite("fg", x)
    check_finite("fg", torch.full((64,), big, dtype=dtype))
    x[5, 5] = float("nan")
    with pytest.raises(ValueError, match="holds 1 NaN"):
        check_finite("fg", x)
