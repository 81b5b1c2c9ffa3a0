"""Features are shared (the sweep's in-batch memo, the feature cache) only between encoders that
compute the same thing: same spec, same structure, same parameters and same buffers, the
non-persistent ones (a normalization's mean and std) included."""

import pytest
import torch
from torch import nn

import modfuse.data.hashing as hashing
from modfuse import FusionModel
from modfuse.attacks import FGSM, GaussianNoise
from modfuse.data import FeatureCache, StackedDataset
from modfuse.data.hashing import module_hash
from modfuse.robustness import Sweep, robustness_sweep


class Shifted(nn.Module):
    """A linear encoder of ``x - shift``; ``shift`` is a non-persistent buffer (as
    PixelNormalize's mean is): not in ``state_dict()``, yet it changes every feature."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 6)
        self.register_buffer("shift", torch.tensor(shift), persistent=False)
        self.out_dim = 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x - self.shift)


def shifted_model(shift: float) -> FusionModel:
    torch.manual_seed(0)  # the same weights whatever the shift
    return FusionModel({"fg": Shifted(shift), "bg": Shifted(0.0)}, num_classes=3).eval()


def vectors(n: int = 40) -> StackedDataset:
    g = torch.Generator().manual_seed(1)
    return StackedDataset(
        {"fg": torch.rand(n, 6, generator=g), "bg": torch.rand(n, 6, generator=g)},
        torch.randint(0, 3, (n,), generator=g),
    )


def timm_model(normalize: bool) -> FusionModel:
    torch.manual_seed(0)
    enc = {"name": "timm:test_resnet", "normalize": normalize}
    return FusionModel({"fg": enc, "bg": enc}, num_classes=3).eval()


def spread_heads(models: list[FusionModel], data: StackedDataset) -> None:
    """Give every model one head that spreads the first model's features over the classes:
    an untrained network's features differ little from item to item, so a random head
    answers one class for every item, whatever the normalization."""
    inputs = {m: data.tensors[m] for m in ("fg", "bg")}
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        feats = models[0].encode(inputs)
        state = {"bias": torch.zeros(3)}
        for m, f in feats.items():
            weight = torch.randn(3, f.shape[1], generator=g) / (f.std(0) + 1e-6)
            state[f"branches.{m}.weight"] = weight
            state["bias"] -= weight @ f.mean(0)  # (3,): centred on the first model's features
        for model in models:
            model.fusion.load_state_dict(state)


def images(n: int = 24) -> StackedDataset:
    g = torch.Generator().manual_seed(2)
    return StackedDataset(
        {"fg": torch.rand(n, 3, 16, 16, generator=g), "bg": torch.rand(n, 3, 16, 16, generator=g)},
        torch.randint(0, 3, (n,), generator=g),
    )


def test_a_non_persistent_buffer_is_part_of_the_encoders_hash():
    a, b = shifted_model(0.0), shifted_model(1.0)
    ea, eb = a.encoders["fg"], b.encoders["fg"]
    state_a, state_b = ea.state_dict(), eb.state_dict()
    assert "shift" not in state_a  # the premise: the state dicts are equal
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert module_hash(ea) != module_hash(eb)
    assert hashing.feature_identity(a, "fg") != hashing.feature_identity(b, "fg")
    # The other modality's encoders are the same: those do share their features.
    assert hashing.feature_identity(a, "bg") == hashing.feature_identity(b, "bg")
    assert module_hash(ea) == module_hash(shifted_model(0.0).encoders["fg"])


def test_a_timm_normalization_is_part_of_the_encoders_identity():
    a, b = timm_model(True), timm_model(False)
    assert a.encoders["fg"].state_dict().keys() == b.encoders["fg"].state_dict().keys()
    assert module_hash(a.encoders["fg"]) != module_hash(b.encoders["fg"])
    assert hashing.feature_identity(a, "fg") != hashing.feature_identity(b, "fg")


def rows_of(models, data, sweeps, name):
    rows = robustness_sweep(models, data, sweeps, batch_size=20, progress=False)
    return [r for r in rows if r["model"] == name]


@pytest.mark.parametrize(
    "make, data",
    [(shifted_model, vectors), (timm_model, images)],
    ids=["buffer_only", "timm_normalize"],
)
def test_a_joint_sweep_gives_each_model_its_own_rows(make, data):
    """B alone scored apart from A; swept beside A it was given A's features (same weights,
    another normalization) wherever the attack left its modality alone."""
    d = data()
    if make is shifted_model:
        a, b = make(0.0), make(1.0)
    else:
        a, b = make(True), make(False)
        spread_heads([b, a], d)
    sweeps = [
        Sweep("fgsm_bg", FGSM(targets=("bg",)), [0.05, 0.2]),
        Sweep("noise_fg", GaussianNoise(targets=("fg",), seed=0), [0.1, 0.3]),
    ]
    alone_a = rows_of({"A": a}, d, sweeps, "A")
    alone_b = rows_of({"B": b}, d, sweeps, "B")
    assert [r["correct"] for r in alone_a] != [r["correct"] for r in alone_b]
    joint = {"A": a, "B": b}
    assert rows_of(joint, d, sweeps, "A") == alone_a
    assert rows_of(joint, d, sweeps, "B") == alone_b


def test_the_feature_cache_keeps_encoders_differing_in_a_buffer_apart(tmp_path):
    a, b = shifted_model(0.0), shifted_model(1.0)
    d = vectors()
    cache = FeatureCache(tmp_path, batch_size=16, progress=False)
    assert cache.key(a, "fg", d) != cache.key(b, "fg", d)
    assert cache.key(a, "bg", d) == cache.key(b, "bg", d)
    cache.features(a, d)
    got = cache.features(b, d)
    assert cache.computed == ["fg"]  # bg: the same encoder, read from A's entry
    with torch.no_grad():
        want = b.encoders["fg"](d.tensors["fg"])
    torch.testing.assert_close(got.features["fg"], want)
    assert len(list(tmp_path.glob("fg-*.safetensors"))) == 2
