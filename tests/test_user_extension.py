"""A user registers components in their own module and builds a model from their names."""

import pytest
import torch

import modfuse
from modfuse import ENCODERS, FUSIONS, FusionModel


@pytest.fixture
def user_module():
    import tests.user_components as mod

    yield mod


def test_model_from_user_registered_names(user_module, tmp_path):
    assert "user_histogram" in modfuse.list_encoders()
    assert "user_max" in modfuse.list_fusions()
    model = FusionModel(
        {"fg": {"name": "user_histogram", "bins": 4}, "bg": "small_cnn"},
        "user_max",
        num_classes=3,
        fusion_dim=6,
    )
    assert isinstance(model.encoders["fg"], user_module.HistogramEncoder)
    assert isinstance(model.fusion, user_module.MaxFusion)
    x = {"fg": torch.rand(2, 3, 16, 16), "bg": torch.rand(2, 3, 16, 16)}
    before = model.encoders["fg"].scale.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 2])).backward()
    optimizer.step()  # one training step moves the user's encoder
    assert not torch.equal(model.encoders["fg"].scale, before)

    model.save(tmp_path / "m")
    model.eval()
    again = FusionModel.load(tmp_path / "m").eval()
    assert torch.equal(model(x), again(x))


def test_load_without_registration_names_missing_component(user_module, tmp_path):
    model = FusionModel({"fg": "small_cnn"}, "user_max", num_classes=2, fusion_dim=4)
    model.save(tmp_path / "m")
    factory = FUSIONS.get("user_max")[0]
    FUSIONS.unregister("user_max")
    try:
        with pytest.raises(KeyError, match="unknown fusion 'user_max'.*import the module"):
            FusionModel.load(tmp_path / "m")
    finally:
        FUSIONS.register("user_max")(factory)
    assert "user_max" in FUSIONS and "user_histogram" in ENCODERS
