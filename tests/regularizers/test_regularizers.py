import pytest
import torch

from modfuse import FusionModel
from modfuse._registry import REGULARIZERS
from modfuse.attacks import GaussianNoise
from modfuse.regularizers import ConsistencyRegularizer, ModalityDropout, ModalityWeightPenalty


def model(fusion: str = "concat", missing: str = "error") -> FusionModel:
    torch.manual_seed(0)
    mlp = {"name": "mlp", "in_dim": 3, "hidden": [6]}
    return FusionModel({"fg": mlp, "bg": mlp}, fusion, num_classes=2, missing=missing)


def test_registered():
    assert {"modality_penalty", "modality_dropout", "consistency"} <= set(REGULARIZERS.names())
    assert isinstance(
        REGULARIZERS.create({"name": "modality_penalty", "modality": "fg"}), ModalityWeightPenalty
    )


@pytest.mark.parametrize("fusion", ["concat", "gated", "lowrank"])
def test_penalty_is_alpha_times_squared_norm_of_the_branch_only(fusion):
    m = model(fusion)
    reg = ModalityWeightPenalty("fg", alpha=0.3)
    expected = 0.3 * sum(p.pow(2).sum() for p in m.fusion.branch("fg").parameters())
    value = reg(m, {}, {})
    torch.testing.assert_close(value, expected)
    value.backward()
    assert all(p.grad is not None for p in m.fusion.branch("fg").parameters())
    assert all(p.grad is None for p in m.fusion.branch("bg").parameters())
    assert ModalityWeightPenalty("fg", alpha=0.3, p=1)(m, {}, {}) != value


def test_dropout_uses_the_learned_placeholder():
    m = model(missing="learned")
    with torch.no_grad():
        m.placeholders["bg"].fill_(7.0)
    feats = {"fg": torch.ones(500, 6), "bg": torch.ones(500, 6)}
    torch.manual_seed(0)
    out = ModalityDropout(p=0.5, modalities=["bg"]).transform_features(m, feats)
    hidden = (out["bg"] == 7.0).all(1)
    assert 0.4 < hidden.float().mean() < 0.6
    assert torch.equal(out["fg"], feats["fg"])
    assert float(ModalityDropout(0.5)(m, {}, {})) == 0.0
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        ModalityDropout(1.0)


def test_consistency_is_zero_without_perturbation_and_positive_with_it():
    m = model()
    x = {"fg": torch.rand(16, 3), "bg": torch.rand(16, 3)}
    out = {
        "logits": m(x),
        "inputs": x,
        "labels": torch.zeros(16, dtype=torch.long),
        "on_features": False,
    }
    none = ConsistencyRegularizer(GaussianNoise(std=0.0, targets=("fg",)))(m, {}, out)
    some = ConsistencyRegularizer(GaussianNoise(std=1.0, targets=("fg",), seed=0), beta=2.0)(
        m, {}, out
    )
    assert float(none) == pytest.approx(0.0, abs=1e-7) and float(some) > 0
    some.backward()
    assert m.fusion.branch("fg").weight.grad is not None


def test_bad_values():
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        ModalityWeightPenalty("fg", alpha=-1)
    with pytest.raises(KeyError, match="has no branch"):
        ModalityWeightPenalty("audio")(model(), {}, {})
