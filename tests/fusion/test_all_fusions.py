"""Every registered fusion, with 2 and 3 modalities: the contract of DESIGN.md."""

import pytest
import torch
from torch import nn

import tests.user_fusion  # noqa: F401  (a user's fusion must pass the same contract)
from modfuse import FusionModel
from modfuse._registry import FUSIONS
from modfuse.fusion.concat import ConcatFusion
from tests.conftest import feature_batch

DIMS = {2: {"fg": 6, "bg": 5}, 3: {"fg": 6, "bg": 5, "audio": 4}}
CASES = [(name, n) for name in FUSIONS.names() for n in (2, 3)]


def build(name: str, n: int, out_dim: int = 7) -> nn.Module:
    return FUSIONS.create(name, in_dims=DIMS[n], out_dim=out_dim)


@pytest.mark.parametrize("name,n", CASES)
def test_output_shape(name, n):
    out = build(name, n)(feature_batch(DIMS[n], batch=3))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name,n", CASES)
def test_gradient_reaches_every_parameter(name, n):
    fusion = build(name, n)
    feats = {m: x.requires_grad_() for m, x in feature_batch(DIMS[n], batch=5).items()}
    (fusion(feats) * torch.randn(5, 7)).sum().backward()
    for pname, p in fusion.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"
    for m, x in feats.items():
        assert x.grad.abs().sum() > 0, f"{name}: modality {m} does not affect the output"


@pytest.mark.parametrize("name,n", CASES)
def test_key_order_does_not_matter(name, n):
    fusion = build(name, n).eval()
    feats = feature_batch(DIMS[n])
    reordered = dict(reversed(list(feats.items())))
    assert list(reordered) != list(feats)
    assert torch.equal(fusion(feats), fusion(reordered))


@pytest.mark.parametrize("name,n", CASES)
def test_missing_key_is_a_clear_error(name, n):
    fusion = build(name, n)
    feats = feature_batch(DIMS[n])
    del feats["fg"]
    with pytest.raises(KeyError, match=r"modality 'fg' missing; the fusion expects \["):
        fusion(feats)


@pytest.mark.parametrize("name,n", CASES)
def test_branch_holds_modality_parameters(name, n):
    fusion = build(name, n)
    for m in DIMS[n]:
        params = list(fusion.branch(m).parameters())
        assert params, f"{name}: branch {m!r} has no parameters"
    with pytest.raises(KeyError, match="has no branch"):
        fusion.branch("nope")


@pytest.mark.parametrize("name", FUSIONS.names())
def test_wrong_feature_size_names_modality(name):
    fusion = build(name, 2)
    feats = feature_batch(DIMS[2])
    feats["bg"] = torch.randn(4, 9)
    with pytest.raises(
        ValueError, match=r"features of 'bg' must have shape \(B, 5\), got \(4, 9\)"
    ):
        fusion(feats)


def test_concat_equals_linear_on_concatenation():
    fusion = ConcatFusion({"fg": 6, "bg": 5, "audio": 4}, out_dim=7)
    feats = feature_batch(fusion.in_dims, batch=8)
    linear = nn.Linear(15, 7)
    # Copy the per-modality blocks into one Linear, in sorted key order (audio, bg, fg).
    with torch.no_grad():
        linear.weight.copy_(torch.cat([fusion.branch(m).weight for m in ["audio", "bg", "fg"]], 1))
        linear.bias.copy_(fusion.bias)
    expected = linear(torch.cat([feats["audio"], feats["bg"], feats["fg"]], 1))
    torch.testing.assert_close(fusion(feats), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        fusion.as_linear()(torch.cat([feats[m] for m in fusion.modalities], 1)),
        expected,
        atol=1e-6,
        rtol=0,
    )


@pytest.mark.parametrize("name", FUSIONS.names())
def test_every_fusion_works_inside_a_model(name):
    model = FusionModel(
        {
            "a": {"name": "mlp", "in_dim": 3, "hidden": [8]},
            "b": {"name": "mlp", "in_dim": 2, "hidden": [4]},
        },
        name,
        num_classes=5,
    )
    out = model({"a": torch.rand(2, 3), "b": torch.rand(2, 2)})
    assert out.shape == (2, 5)
