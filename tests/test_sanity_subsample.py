"""The sanity probes of a sweep cost little: a bounded subsample of the first batch, no work
done twice, and random noise of the attack's own norm."""

from collections import Counter

import pytest
import torch

from modfuse.attacks import FGSM, PGD
from modfuse.evaluate import Sweep, robustness_sweep
from modfuse.sanity import random_noise
from tests.mlp_world import mlp_world

N = 64


def setup():
    return mlp_world(N)


def encoder_calls(model, data, sweeps, **kw) -> Counter:
    """Batch sizes the encoder was called on during a sweep."""
    sizes = []
    hook = model.encoders["fg"].register_forward_hook(
        lambda mod, args, out: sizes.append(args[0].shape[0])
    )
    try:
        robustness_sweep({"m": model}, data, sweeps, batch_size=N, progress=False, **kw)
    finally:
        hook.remove()
    return Counter(sizes)


def test_probes_run_on_a_bounded_subsample_and_repeat_no_work():
    model, data = setup()
    sweeps = [
        Sweep("fgsm", FGSM(targets=("fg",)), [0.1, 0.3]),
        Sweep("pgd", PGD(targets=("fg",), steps=5, seed=0), [0.1, 0.3]),
    ]
    plain = encoder_calls(model, data, sweeps, sanity=False)
    checked = encoder_calls(model, data, sweeps, sanity=True, sanity_samples=8)
    extra = checked - plain
    assert set(extra) == {8}, extra  # nothing on the full batch of 64
    # Two calls for the stochastic check, one gradient shared by both attacks, one noisy
    # call shared by both (same norm and eps); the attacks' accuracy comes from the sweep.
    assert sum(extra.values()) == 4, extra


def test_sanity_samples_is_checked():
    model, data = setup()
    with pytest.raises(ValueError, match="sanity_samples must be an integer >= 1, got 0"):
        robustness_sweep({"m": model}, data, [], sanity_samples=0, progress=False)


def test_random_noise_has_the_attacks_norm_and_size():
    x = {"fg": torch.zeros(5, 3, 4, 4) + 0.5, "mask": torch.zeros(5, 1, 4, 4)}
    linf = random_noise(FGSM(targets=("fg",)), x, ["fg"], 0.1)["fg"] - x["fg"]
    assert torch.allclose(linf.abs(), torch.tensor(0.1))
    l2 = random_noise(PGD(targets=("fg",), norm="l2"), x, ["fg"], 0.3)["fg"] - x["fg"]
    assert torch.allclose(l2.flatten(1).norm(dim=1), torch.tensor(0.3))
    assert float(l2.abs().max()) < 0.3  # spread over the sample, not 0.3 on each pixel
    x["mask"][:, :, :2] = 1
    region = random_noise(FGSM(targets=("fg",), region="mask"), x, ["fg"], 0.1)["fg"] - x["fg"]
    assert float(region[:, :, 2:].abs().max()) == 0 and float(region[:, :, :2].abs().min()) > 0
