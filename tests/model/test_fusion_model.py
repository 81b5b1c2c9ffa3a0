import pytest
import torch

from modfuse import ContextViews, FusionModel


def two_modality_model(**kw) -> FusionModel:
    encoders = {
        "fg": {"name": "small_cnn", "width": 4, "depth": 2},
        "bg": {"name": "small_cnn", "width": 4, "depth": 2},
    }
    return FusionModel(encoders, kw.pop("fusion", "concat"), num_classes=3, **kw)


def batch(b: int = 2) -> dict[str, torch.Tensor]:
    return {"fg": torch.rand(b, 3, 16, 16), "bg": torch.rand(b, 3, 16, 16)}


def test_forward_is_fuse_of_encode():
    model = two_modality_model().eval()
    x = batch()
    feats = model.encode(x)
    assert {k: v.shape for k, v in feats.items()} == {"fg": (2, 8), "bg": (2, 8)}
    assert torch.equal(model(x), model.fuse(feats))


def test_concat_without_fusion_dim_is_one_linear_classifier():
    model = two_modality_model()
    assert isinstance(model.head, torch.nn.Identity)
    assert model.fusion.out_dim == 3
    assert isinstance(two_modality_model(fusion="gated").head, torch.nn.Sequential)


def test_missing_modality_policies():
    x = batch()
    del x["bg"]
    with pytest.raises(KeyError, match=r"modality 'bg' missing; the model expects \['bg', 'fg'\]"):
        two_modality_model()(x)
    zeros = two_modality_model(missing="zeros").eval()
    feats = zeros.encode(x)
    expected = zeros.fuse({**feats, "bg": torch.zeros(2, 8)})
    assert torch.equal(zeros(x), expected)
    learned = two_modality_model(missing="learned")
    out = learned(x)
    out.sum().backward()
    assert learned.placeholders["bg"].grad is not None
    with pytest.raises(KeyError, match="at least one must be present"):
        learned.fuse({})


def test_unknown_key_and_wrong_shapes_are_named():
    model = two_modality_model()
    with pytest.raises(KeyError, match=r"unknown input 'label'"):
        model({**batch(), "label": torch.zeros(2)})
    with pytest.raises(
        ValueError, match=r"modality 'fg' must have shape \(B, 3, \*, \*\), got \(2, 1, 16, 16\)"
    ):
        model({"fg": torch.rand(2, 1, 16, 16), "bg": torch.rand(2, 3, 16, 16)})
    with pytest.raises(ValueError, match="batch sizes differ"):
        model({"fg": torch.rand(2, 3, 16, 16), "bg": torch.rand(3, 3, 16, 16)})
    bad = batch()
    bad["bg"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="modality 'bg' holds 1 NaN or inf"):
        model(bad)


def test_select_drops_labels_and_ids():
    model = two_modality_model()
    b = {**batch(), "label": torch.zeros(2), "image_id": [1, 2]}
    assert sorted(model.select(b)) == ["bg", "fg"]


def test_unimodal_heads_give_per_modality_predictions():
    model = two_modality_model(unimodal_heads=True)
    logits = model.unimodal_logits(model.encode(batch()))
    assert {k: v.shape for k, v in logits.items()} == {"fg": (2, 3), "bg": (2, 3)}
    with pytest.raises(RuntimeError, match="unimodal_heads=True"):
        two_modality_model().unimodal_logits({})


def test_views_turn_a_raw_image_into_fg_and_bg():
    model = two_modality_model(views=ContextViews(size=16)).eval()
    image = torch.rand(2, 3, 24, 24)
    mask = torch.zeros(2, 1, 24, 24)
    mask[:, :, 4:12, 6:18] = 1
    views = model.views(image, mask)
    assert torch.equal(model({"image": image, "mask": mask}), model(views))
    assert sorted(model.select({"image": image, "mask": mask, "label": 0})) == ["image", "mask"]
    with pytest.raises(KeyError, match="both 'image' and 'mask'"):
        model({"image": image})


def test_model_level_errors():
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        FusionModel({"a": "small_cnn"}, num_classes=0)
    with pytest.raises(KeyError, match="unknown fusion 'nope'; registered"):
        FusionModel({"a": "small_cnn"}, "nope", num_classes=2)
    with pytest.raises(KeyError, match="unknown encoder 'cnn'"):
        FusionModel({"a": "cnn"}, num_classes=2)


def test_labels_out_of_range_are_refused_before_any_work():
    from modfuse.attacks import FGSM
    from modfuse.data import StackedDataset
    from modfuse.robustness import robustness_sweep
    from modfuse.training.trainer import Trainer

    model = two_modality_model()
    x = batch(4)
    bad = torch.tensor([0, 1, 3, 0])  # 3 classes: label 3 does not exist
    with pytest.raises(
        ValueError, match=r"labels must lie in \[0, 3\) for this model, got \[0, 3\]"
    ):
        FGSM()(model, x, bad)
    data = StackedDataset(x, bad)
    with pytest.raises(ValueError, match="labels must lie in"):
        Trainer(model, epochs=1, progress=False).fit(data)
    with pytest.raises(ValueError, match="labels must lie in"):
        robustness_sweep({"m": model}, data, [], progress=False)
    with pytest.raises(ValueError, match="1-D integer tensor"):
        model.check_labels(torch.zeros(4))
