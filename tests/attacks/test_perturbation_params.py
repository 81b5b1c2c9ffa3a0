"""Random parameters of corruptions: drawn once per call for all targets, then applied.

``make_params(x, streams)`` draws every random number of a call (torchvision v2's split), each
item from its own stream; ``transform(key, x, params)`` applies them. A random sigma is one per
sample, shared by every target; noise is independent per key but does not depend on the order
of ``targets``.
"""

import pytest
import torch

from modfuse.attacks import GaussianBlur, GaussianNoise, gaussian_blur
from modfuse.attacks.streams import ItemStreams
from tests.attacks.common import fg_bg_batch, fg_bg_model

LABELS = torch.tensor([0, 1, 2, 0])


def twin_batch() -> dict[str, torch.Tensor]:
    """fg and bg holding the same pixels (as separate tensors)."""
    x = fg_bg_batch()
    return {"fg": x["fg"], "bg": x["fg"].clone()}


def test_a_random_sigma_blurs_fg_and_bg_of_a_sample_alike():
    blur = GaussianBlur(sigma=(0.5, 3.0), targets=("fg", "bg"), seed=0)
    x = twin_batch()
    out = blur(fg_bg_model(), x, LABELS)
    assert not torch.equal(out["fg"], x["fg"])  # it did blur
    # The same pixels under the same per-sample sigma: the same result, key for key.
    assert torch.equal(out["fg"], out["bg"]), "fg and bg of a sample got different sigmas"


def test_a_random_sigma_does_not_depend_on_the_order_of_targets():
    x = fg_bg_batch()
    a = GaussianBlur(sigma=(0.5, 3.0), targets=("fg", "bg"), seed=3)(fg_bg_model(), x, LABELS)
    b = GaussianBlur(sigma=(0.5, 3.0), targets=("bg", "fg"), seed=3)(fg_bg_model(), x, LABELS)
    for k in ("fg", "bg"):
        assert torch.equal(a[k], b[k]), f"{k} changed with the order of targets"


def test_blur_params_one_sigma_per_sample_in_range_shared_by_every_key():
    blur = GaussianBlur(sigma=(0.5, 3.0), targets=("fg", "bg"))
    params = blur.make_params(fg_bg_batch(), ItemStreams(range(4)))
    sigma = params["sigma"]
    assert sorted(sigma) == ["bg", "fg"] and sigma["fg"] is sigma["bg"]
    assert sigma["fg"].shape == (4,) and len(set(sigma["fg"].tolist())) == 4  # per sample
    assert float(sigma["fg"].min()) >= 0.5 and float(sigma["fg"].max()) <= 3.0


def test_blur_applies_exactly_the_params_it_drew():
    x = fg_bg_batch()
    blur = GaussianBlur(sigma=(0.5, 3.0), targets=("fg", "bg"), seed=5)
    out = blur(fg_bg_model(), x, LABELS)
    # The same seed and items: the same streams, the same draw.
    sigma = blur.make_params(x, blur.item_streams(x, LABELS))["sigma"]
    for k in ("fg", "bg"):
        want = gaussian_blur(x[k], sigma[k]).clamp(0, 1)
        torch.testing.assert_close(out[k], want, rtol=0, atol=0)


def test_a_fixed_sigma_draws_nothing():
    streams = ItemStreams(range(4))
    states = [g.get_state() for g in streams.generators]
    params = GaussianBlur(sigma={"fg": 1.0, "bg": 2.0}, targets=("fg", "bg")).make_params(
        fg_bg_batch(), streams
    )
    assert params == {"sigma": {"fg": 1.0, "bg": 2.0}}
    assert all(torch.equal(g.get_state(), s) for g, s in zip(streams.generators, states))
    # Nor does a call: with no seed, torch's global RNG is left as it was.
    model, x = fg_bg_model(), fg_bg_batch()  # fg_bg_model seeds torch's RNG
    before = torch.random.get_rng_state()
    GaussianBlur(sigma=1.0, targets=("fg",))(model, x, LABELS)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_a_random_sigma_needs_one_batch_size():
    x = {"fg": torch.rand(4, 3, 8, 8), "bg": torch.rand(3, 3, 8, 8)}
    blur = GaussianBlur(sigma=(0.5, 3.0), targets=("fg", "bg"))
    with pytest.raises(
        ValueError, match=r"one batch size for all targets, got \{'fg': 4, 'bg': 3\}"
    ):
        blur.make_params(x, None)


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: GaussianBlur(sigma=(0.5, 3.0), targets=("fg", "bg"), seed=seed),
        lambda seed: GaussianNoise(std=0.2, targets=("fg", "bg"), seed=seed),
        lambda seed: GaussianNoise(snr_db=10.0, targets=("fg", "bg"), seed=seed),
    ],
    ids=["blur_range", "noise_std", "noise_snr"],
)
def test_same_seed_same_numbers_other_seed_other_numbers(make):
    x, model = fg_bg_batch(), fg_bg_model()
    first, again, other = (
        make(0)(model, x, LABELS),
        make(0)(model, x, LABELS),
        make(1)(model, x, LABELS),
    )
    attack = make(0)
    twice = [attack(model, x, LABELS), attack(model, x, LABELS)]  # one instance, two calls
    for k in ("fg", "bg"):
        assert torch.equal(first[k], again[k]) and torch.equal(twice[0][k], twice[1][k])
        assert torch.equal(first[k], twice[0][k])
        assert not torch.equal(first[k], other[k])


def test_noise_is_independent_per_key():
    x = twin_batch()
    out = GaussianNoise(std=0.2, targets=("fg", "bg"), seed=0, ranges={"fg": None, "bg": None})(
        fg_bg_model(), x, LABELS
    )
    # Sensor noise: each input its own draw, even where the pixels are the same.
    assert not torch.equal(out["fg"] - x["fg"], out["bg"] - x["bg"])


def test_noise_does_not_depend_on_the_order_of_targets():
    x = fg_bg_batch()
    a = GaussianNoise(std=0.2, targets=("fg", "bg"), seed=3)(fg_bg_model(), x, LABELS)
    b = GaussianNoise(std=0.2, targets=("bg", "fg"), seed=3)(fg_bg_model(), x, LABELS)
    for k in ("fg", "bg"):
        assert torch.equal(a[k], b[k]), f"{k} changed with the order of targets"


def test_noise_applies_exactly_the_params_it_drew():
    x = {k: v * 0.5 + 0.25 for k, v in fg_bg_batch().items()}  # room for noise: no clamping
    noise = GaussianNoise(snr_db=30.0, targets=("fg", "bg"), seed=2)
    out = noise(fg_bg_model(), x, LABELS)
    params = noise.make_params(x, noise.item_streams(x, LABELS))
    for k in ("fg", "bg"):
        assert params["noise"][k].shape == x[k].shape
        rms = x[k].flatten(1).pow(2).mean(1).sqrt().view(-1, 1, 1, 1)
        torch.testing.assert_close(params["std"][k], rms / 10 ** (30.0 / 20))
        want = (x[k] + params["std"][k] * params["noise"][k]).clamp(0, 1)
        torch.testing.assert_close(out[k], want, rtol=0, atol=0)
