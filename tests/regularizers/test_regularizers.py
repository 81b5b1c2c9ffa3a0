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


def test_the_base_class_defaults_name_nothing_transform_nothing_hide_nothing():
    from modfuse.regularizers import LossTerm, Regularizer, as_regularizer

    class Zero(Regularizer):
        def __call__(self, model, batch, outputs):
            return torch.zeros(())

    m = model(missing="learned")
    feats = {"fg": torch.rand(4, 6), "bg": torch.rand(4, 6)}
    reg = Zero()
    assert reg.modality is None and reg.named_modalities() == []
    assert reg.transform_features(m, feats) is feats and reg.hidden_modalities(m) == []
    assert ModalityWeightPenalty("fg").named_modalities() == ["fg"]
    assert as_regularizer(reg) is reg
    term = as_regularizer(lambda model, batch, outputs: torch.tensor(3.0))
    assert isinstance(term, LossTerm) and float(term(m, {}, {})) == 3.0
    with pytest.raises(TypeError, match="must be a modfuse.regularizers.Regularizer or a function"):
        as_regularizer(0.5)
    with pytest.raises(TypeError, match="abstract"):
        Regularizer()


def test_dropout_says_which_modalities_it_hides():
    m = model()
    assert ModalityDropout(0.2).hidden_modalities(m) == ["bg", "fg"]
    assert ModalityDropout(0.2, modalities=["bg", "audio"]).hidden_modalities(m) == ["bg"]
    assert ModalityDropout(0.0).hidden_modalities(m) == []
    assert ModalityDropout(0.2, modalities=["bg"]).named_modalities() == ["bg"]


def test_dropout_keeps_placeholders_in_the_graph_when_it_hides_nothing():
    # DistributedDataParallel without find_unused_parameters needs every trained parameter in
    # every step's graph: a step where no sample is hidden gives the placeholders a zero grad.
    m = model(missing="learned")
    feats = {"fg": torch.ones(3, 6), "bg": torch.ones(3, 6)}
    out = ModalityDropout(p=1e-12).transform_features(m, feats)
    sum(v.sum() for v in out.values()).backward()
    for p in m.placeholders.values():
        assert p.grad is not None and not p.grad.any()


def test_the_trainer_asks_each_regularizer_to_transform_features_in_training_only():
    from modfuse.data import FeatureDataset
    from modfuse.regularizers import Regularizer
    from modfuse.training.trainer import Trainer

    class HideBg(Regularizer):
        calls = 0

        def __call__(self, model, batch, outputs):
            return torch.zeros(())

        def transform_features(self, model, features):
            HideBg.calls += 1
            return {**features, "bg": torch.zeros_like(features["bg"])}

    m = model()
    g = torch.Generator().manual_seed(0)
    fg, bg = torch.randn(32, 6, generator=g), torch.randn(32, 6, generator=g)
    data = FeatureDataset({"fg": fg, "bg": bg}, (bg[:, 0] > 0).long())  # only bg tells
    before = m.fusion.branch("bg").weight.clone()
    Trainer(m, epochs=2, batch_size=16, regularizers=[HideBg()], progress=False).fit(data, data)
    assert HideBg.calls == 4  # 2 epochs of 2 steps; evaluation calls none
    # The bg features were always zero in training: their fusion weights got no gradient.
    assert torch.equal(m.fusion.branch("bg").weight, before)
