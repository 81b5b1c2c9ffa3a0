"""Property-based tests across the public API (hypothesis): fusions, regularizers, configs."""

import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modfuse import FusionModel
from modfuse._registry import FUSIONS
from modfuse.attacks import FGSM, PGD
from modfuse.config.schema import ModelConfig, ValidationError
from modfuse.regularizers import ModalityDropout, ModalityWeightPenalty

BUILTIN_FUSIONS = ["attention", "concat", "gated", "lowrank", "recurrent", "sum", "tensor"]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(
    name=st.sampled_from(BUILTIN_FUSIONS),
    dims=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 9), min_size=1, max_size=4
    ),
    out_dim=st.integers(1, 6),
    batch=st.integers(0, 5),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
)
def test_any_fusion_any_modalities_batch_and_dtype(name, dims, out_dim, batch, dtype):
    torch.manual_seed(0)
    fusion = FUSIONS.create(name, in_dims=dims, out_dim=out_dim).to(dtype).eval()
    feats = {m: torch.randn(batch, d).to(dtype) for m, d in dims.items()}
    out = fusion(feats)
    assert out.shape == (batch, out_dim) and out.dtype == dtype
    assert torch.isfinite(out.float()).all()
    if dtype == torch.float32:
        assert torch.equal(out, fusion(dict(reversed(list(feats.items())))))


@FAST
@given(
    alpha=st.floats(0, 10),
    p=st.sampled_from([1.0, 2.0, 3.0]),
    fusion=st.sampled_from(BUILTIN_FUSIONS),
    drop=st.floats(0, 0.95),
    batch=st.integers(1, 40),
)
def test_regularizers_are_finite_and_dropout_keeps_a_modality(alpha, p, fusion, drop, batch):
    torch.manual_seed(0)
    mlp = {"name": "mlp", "in_dim": 3, "hidden": [4]}
    model = FusionModel({"a": mlp, "b": mlp, "c": mlp}, fusion, num_classes=2, missing="zeros")
    value = ModalityWeightPenalty("b", alpha=alpha, p=p)(model, {}, {})
    assert torch.isfinite(value) and value >= 0
    feats = {m: torch.ones(batch, 4) for m in "abc"}
    out = ModalityDropout(drop).transform_features(model, feats)
    hidden = torch.stack([(out[m] == 0).all(1) for m in "abc"])  # (M, B)
    assert not hidden.all(0).any()


@FAST
@given(batch=st.integers(0, 3), eps=st.floats(0, 0.5), attack=st.sampled_from(["fgsm", "pgd"]))
def test_attacks_on_empty_and_single_sample_batches(batch, eps, attack):
    torch.manual_seed(0)
    model = FusionModel({"fg": {"name": "mlp", "in_dim": 3, "hidden": [4]}}, num_classes=2)
    x = {"fg": torch.rand(batch, 3)}
    y = torch.zeros(batch, dtype=torch.long)
    make = FGSM(eps=eps) if attack == "fgsm" else PGD(eps=eps, steps=2, seed=0)
    out = make(model, x, y)
    assert out["fg"].shape == (batch, 3)
    assert (out["fg"] - x["fg"]).abs().max() <= eps + 1e-6 if batch else True


encoder_spec = st.one_of(
    st.sampled_from(["small_cnn", "mlp", "cnn9", "timm:", ""]),
    st.fixed_dictionaries(
        {"name": st.sampled_from(["small_cnn", "nope"]), "width": st.integers(-2, 8)}
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(encoders={"fg": "mlp"}, fusion="concat", num_classes=2, fusion_dim=None, missing="zeros")
@example(encoders={"fg": "small_cnn"}, fusion="gated", num_classes=3, fusion_dim=4, missing="error")
@given(
    encoders=st.dictionaries(st.sampled_from(["fg", "bg"]), encoder_spec, max_size=2),
    fusion=st.sampled_from(BUILTIN_FUSIONS + ["concatt", 3]),
    num_classes=st.integers(-2, 6),
    fusion_dim=st.one_of(st.none(), st.integers(-3, 8)),
    missing=st.sampled_from(["error", "zeros", "learned", "ignore"]),
)
def test_fuzzed_model_configs_fail_validation_or_build(
    encoders, fusion, num_classes, fusion_dim, missing
):
    raw = {
        "encoders": encoders,
        "fusion": fusion,
        "num_classes": num_classes,
        "fusion_dim": fusion_dim,
        "missing": missing,
    }
    try:
        cfg = ModelConfig.model_validate(raw)
    except ValidationError as err:
        assert str(err)  # a message that names the field
        return
    try:
        model = cfg.build()
    except ValueError as err:  # values only the component can check (e.g. width=0)
        assert "must be" in str(err)
        return
    x = {
        m: torch.rand(2, 3, 8, 8) if model.encoders[m].input_shape[0] == 3 else torch.rand(2, 1)
        for m in model.modalities
    }
    assert model(x).shape == (2, num_classes)
