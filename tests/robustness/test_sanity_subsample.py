"""The sanity probes of a sweep cost little: a bounded subsample of the first batch, no work
done twice, and random noise of the attack's own norm."""

from collections import Counter

import pytest
import torch

from modfuse.attacks import FGSM, PGD
from modfuse.data import StackedDataset
from modfuse.robustness import Sweep, robustness_sweep
from modfuse.robustness.sanity.checks import random_noise
from modfuse.robustness.sanity.probes import STOCHASTIC_SAMPLES
from modfuse.robustness.sanity.record import SampleRecord, head
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
    # Two calls for the stochastic check and one noisy call shared by both attacks (same
    # norm and eps); the clean gradient is read off FGSM's gradient pass (PGD's is the same
    # gradient) and the attacks' accuracy comes from the sweep.
    assert sum(extra.values()) == 3, extra


def test_without_an_fgsm_pass_the_probe_takes_the_gradient_itself():
    model, data = setup()
    sweeps = [Sweep("pgd", PGD(targets=("fg",), steps=5, seed=0), [0.1, 0.3])]
    extra = encoder_calls(model, data, sweeps, sanity_samples=8) - encoder_calls(
        model, data, sweeps, sanity=False
    )
    assert extra == Counter({8: 4}), extra  # stochastic 2, gradient 1, noise 1


@pytest.mark.parametrize("region, calls", [(None, 3), ("mask", 4)])
def test_a_gradient_zeroed_outside_a_region_is_not_reused(region, calls):
    """FGSM's gradient with a region is zero outside it: not the probe's gradient, which is
    then taken afresh (one encoder call more than without a region)."""
    from modfuse import ContextViews, FusionModel

    g = torch.Generator().manual_seed(1)
    image = torch.rand(N, 3, 16, 16, generator=g)
    mask = torch.zeros(N, 1, 16, 16)
    mask[:, :, 4:12, 5:11] = 1
    data = StackedDataset({"image": image, "mask": mask}, torch.randint(0, 3, (N,), generator=g))
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 4, "depth": 2}
    model = FusionModel({"fg": enc, "bg": enc}, num_classes=3, views=ContextViews(size=16)).eval()
    attack = FGSM(targets=("image",), ranges={"image": (0, 1)}, region=region)
    sweeps = [Sweep("fgsm", attack, [0.1, 0.3])]
    extra = encoder_calls(model, data, sweeps, sanity_samples=8) - encoder_calls(
        model, data, sweeps, sanity=False
    )
    assert extra == Counter({8: calls}), extra


def test_stochastic_check_on_a_few_items_and_the_noise_on_all_of_the_subsample():
    model, data = setup()
    sweeps = [Sweep("fgsm", FGSM(targets=("fg",)), [0.1, 0.3])]
    extra = encoder_calls(model, data, sweeps) - encoder_calls(model, data, sweeps, sanity=False)
    assert extra == Counter({STOCHASTIC_SAMPLES: 2, 32: 1}), extra  # default sanity_samples


def test_the_reused_gradient_is_the_one_the_probe_would_take():
    """The per-item gradient kept from FGSM's batch-mean loss equals each item's own loss
    gradient, as the probe computes it on the subsample."""
    model, data = setup()
    record = SampleRecord(*head({"fg": data.tensors["fg"]}, data.labels, 8))
    clean: dict = {}
    FGSM(targets=("fg",)).sweep(
        model, {"fg": data.tensors["fg"]}, data.labels, [0.1], clean_out=clean
    )
    record.note_gradient("m", FGSM(targets=("fg",)), {"fg": data.tensors["fg"]}, clean)
    (kept,) = record.gradients.values()
    leaf = data.tensors["fg"][:8].clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model({"fg": leaf}), data.labels[:8], reduction="sum")
    (want,) = torch.autograd.grad(loss, leaf)
    assert torch.allclose(kept["fg"], want, atol=1e-6)


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


@pytest.mark.parametrize("dtype, calls", [(torch.float32, 3), (torch.float16, 4)])
def test_a_float16_gradient_is_not_reused(dtype, calls):
    """FGSM's float16 gradient of the batch-mean loss can underflow where each item's own
    does not: the probe takes its own (one encoder call more)."""
    model, data = setup()
    model = model.to(dtype)
    data = StackedDataset({"fg": data.tensors["fg"].to(dtype)}, data.labels)
    sweeps = [Sweep("fgsm", FGSM(targets=("fg",)), [0.1, 0.3])]
    extra = encoder_calls(model, data, sweeps, sanity_samples=8) - encoder_calls(
        model, data, sweeps, sanity=False
    )
    assert extra == Counter({8: calls}), extra
