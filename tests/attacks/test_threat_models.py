"""The two threat models, feature caching of untouched modalities, and the blur itself."""

import pytest
import torch
import torchvision.transforms.functional as TF

from modfuse.attacks import FGSM, PGD, GaussianBlur, gaussian_blur
from tests.attacks.common import fg_bg_batch, fg_bg_model, raw_batch


def count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_untouched_modality_is_encoded_once_per_call_in_eval_mode():
    model = fg_bg_model().eval()
    bg_calls, fg_calls = count_calls(model.encoders["bg"]), count_calls(model.encoders["fg"])
    PGD(eps=8 / 255, steps=10, seed=0)(model, fg_bg_batch(), torch.tensor([0, 1, 2, 0]))
    assert bg_calls[0] == 1
    assert fg_calls[0] == 10


def test_in_train_mode_nothing_is_cached():
    model = fg_bg_model().train()
    bg_calls = count_calls(model.encoders["bg"])
    PGD(eps=8 / 255, steps=4, model_mode="keep", seed=0)(
        model, fg_bg_batch(), torch.tensor([0, 1, 2, 0])
    )
    assert bg_calls[0] == 4


def test_cached_and_recomputed_attacks_agree():
    model = fg_bg_model().eval()
    x, y = fg_bg_batch(), torch.tensor([0, 1, 2, 0])
    cached = PGD(eps=8 / 255, steps=5, seed=1)(model, x, y)
    # Targeting bg with eps 0 forces the full model to run at every step.
    full = PGD(eps={"fg": 8 / 255, "bg": 0.0}, steps=5, seed=1, targets=("fg", "bg"))(model, x, y)
    torch.testing.assert_close(cached["fg"], full["fg"], atol=1e-6, rtol=0)


def test_raw_image_threat_model_moves_both_views():
    model = fg_bg_model(views=True).eval()
    x = raw_batch()
    y = torch.tensor([0, 1, 2])
    adv = FGSM(eps=8 / 255, targets=("image",))(model, x, y)
    assert adv["mask"] is x["mask"]
    clean_views, adv_views = (
        model.views(x["image"], x["mask"]),
        model.views(adv["image"], x["mask"]),
    )
    for k in ("fg", "bg"):
        assert (clean_views[k] - adv_views[k]).abs().max() > 1e-3, f"view {k} did not move"
    assert (adv["image"] - x["image"]).abs().max() <= 8 / 255 + 1e-6


def test_region_blur_changes_only_the_object():
    model = fg_bg_model(views=True)
    x = raw_batch()
    out = GaussianBlur(sigma=2.0, targets=("image",), region="mask")(
        model, x, torch.tensor([0, 1, 2])
    )
    inside = x["mask"].bool().expand_as(x["image"])
    assert torch.equal(out["image"][~inside], x["image"][~inside])
    assert (out["image"][inside] - x["image"][inside]).abs().max() > 0.05


@pytest.mark.parametrize("sigma", [0.8, 1.5, 3.0])
def test_blur_matches_torchvision(sigma):
    x = torch.rand(4, 3, 32, 32)
    radius = int(torch.ceil(torch.tensor(3.0 * sigma)))
    ref = TF.gaussian_blur(x, [2 * radius + 1] * 2, [sigma, sigma])
    torch.testing.assert_close(gaussian_blur(x, sigma), ref, atol=1e-5, rtol=0)


def test_per_sample_sigma_equals_one_blur_per_sample():
    x = torch.rand(3, 2, 20, 20)
    sigmas = torch.tensor([0.0, 1.0, 2.5])
    out = gaussian_blur(x, sigmas)
    assert torch.equal(out[0], x[0])
    for i in (1, 2):
        torch.testing.assert_close(
            out[i : i + 1], gaussian_blur(x[i : i + 1], float(sigmas[i])), atol=1e-6, rtol=0
        )


def test_blur_keeps_mean_and_lowers_variance():
    x = torch.rand(2, 3, 32, 32)
    y = gaussian_blur(x, 2.0)
    torch.testing.assert_close(y.mean(), x.mean(), atol=1e-3, rtol=0)
    assert y.var() < 0.3 * x.var()
