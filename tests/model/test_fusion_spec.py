"""FusionModel sets a fusion's in_dims and out_dim itself; it says so when a spec disagrees."""

import warnings

import pytest
import torch

from modfuse import FusionModel

ENCODERS = {"fg": {"name": "mlp", "in_dim": 3, "hidden": [5]}, "bg": {"name": "mlp", "in_dim": 2}}


def build(fusion, **kw) -> FusionModel:
    return FusionModel(ENCODERS, fusion, num_classes=3, **kw)


def test_out_dim_in_the_spec_that_the_model_replaces_warns():
    with pytest.warns(UserWarning, match=r"fusion spec sets out_dim=99, but FusionModel uses "):
        model = build({"name": "gated", "out_dim": 99}, fusion_dim=16)
    assert model.fusion.out_dim == 16
    assert model({"fg": torch.rand(2, 3), "bg": torch.rand(2, 2)}).shape == (2, 3)


def test_warning_names_key_user_value_and_value_used():
    with pytest.warns(UserWarning) as rec:
        build({"name": "concat", "out_dim": 7})  # concat emits the logits: out_dim = classes
    (message,) = [str(r.message) for r in rec if "fusion spec" in str(r.message)]
    assert "out_dim=7" in message and "out_dim=3" in message and "fusion_dim" in message


def test_in_dims_in_the_spec_that_the_model_replaces_warns():
    with pytest.warns(UserWarning, match=r"sets in_dims=\{'fg': 1\}.*uses in_dims=\{'bg': 128"):
        model = build({"name": "sum", "in_dims": {"fg": 1}})
    assert model.fusion.in_dims == {"bg": 128, "fg": 5}


def test_no_warning_when_the_spec_agrees_or_says_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build({"name": "gated", "out_dim": 16}, fusion_dim=16)
        build({"name": "sum", "in_dims": {"bg": 128, "fg": 5}})
        build("attention")
        build({"name": "lowrank", "rank": 2})
