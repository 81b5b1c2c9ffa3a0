"""Every loop moves its batches to the model through `modfuse.devices.to_model`.

There is no GPU here, so the test uses the dtype half of that function: the model is float64,
the data float32. A loop that skips the move feeds float32 tensors to float64 weights and
fails with a dtype mismatch, exactly where a GPU run would fail with a device mismatch.
"""

import pytest
import torch

from modfuse import ContextViews, FusionModel
from modfuse.attacks import FGSM, PGD, GaussianBlur
from modfuse.data import FeatureCache, StackedDataset
from modfuse.devices import model_device, model_dtype, to_model
from modfuse.robustness import Sweep, feature_shift, modality_reliance, robustness_sweep
from modfuse.robustness.sanity import check_model
from modfuse.training.trainer import Trainer

SIZE = 16


def world(n: int = 24) -> StackedDataset:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(n, 3, SIZE, SIZE, generator=g)
    mask = torch.zeros(n, 1, SIZE, SIZE)
    mask[:, :, 4:12, 5:11] = 1
    views = ContextViews(size=SIZE)(image, mask)
    labels = torch.randint(0, 3, (n,), generator=g)
    tensors = {"image": image, "mask": mask, "fg": views["fg"], "bg": views["bg"]}
    return StackedDataset(tensors, labels)


def float64_model(mods: tuple[str, ...] = ("bg", "fg"), views: bool = True) -> FusionModel:
    torch.manual_seed(0)
    cnn = {"name": "small_cnn", "width": 4, "depth": 2}
    front = ContextViews(size=SIZE) if views else None
    model = FusionModel({m: cnn for m in mods}, "concat", num_classes=3, views=front)
    return model.double()


@pytest.fixture(scope="module")
def data() -> StackedDataset:
    data = world()
    assert data.tensors["fg"].dtype == torch.float32  # the premise of every test below
    return data


def test_to_model_moves_and_casts_floats_only():
    model = torch.nn.Linear(2, 2).double()
    x, ids = torch.zeros(3, 2), torch.arange(3)
    out = to_model({"x": x, "ids": ids, "name": ["a", "b", "c"]}, model)
    assert out["x"].dtype == torch.float64 and out["ids"].dtype == torch.int64
    assert out["name"] == ["a", "b", "c"]
    same = torch.zeros(3, 2, dtype=torch.float64)
    assert to_model({"x": same}, model)["x"] is same  # already in place: the same tensor
    assert model_device(model) == torch.device("cpu") and model_dtype(model) == torch.float64


def test_training_on_inputs_and_on_features_follows_the_model(data, tmp_path):
    model = float64_model()
    trainer = Trainer(model, epochs=1, batch_size=8, progress=False, run_dir=tmp_path / "r")
    history = trainer.fit(data, data)
    assert torch.isfinite(torch.tensor(history[-1]["train_loss"]))
    assert 0 <= trainer.evaluate(data) <= 1
    feats = FeatureCache(tmp_path / "cache", progress=False).features(model, data)
    assert feats.features["fg"].dtype == torch.float32  # stored as float32 on the CPU
    Trainer(model, epochs=1, batch_size=8, progress=False).fit(feats, feats)


def test_adversarial_training_follows_the_model(data):
    # Without views: adversarial training on "fg" takes the batch's fg view itself.
    model = float64_model(("fg",), views=False)
    attack = FGSM(eps=2 / 255, targets=("fg",))
    Trainer(model, epochs=1, batch_size=8, progress=False, adversarial=attack).fit(data)


def test_sweeps_and_diagnostics_follow_the_model(data, tmp_path):
    models = {"joint": float64_model(), "fg_only": float64_model(("fg",))}
    sweeps = [
        Sweep("fg_blur", GaussianBlur(targets=("fg",)), [1.0]),  # shared, model-free
        Sweep("fg_fgsm", FGSM(targets=("fg",)), [2 / 255, 8 / 255]),  # one gradient, all eps
        Sweep("fg_pgd", PGD(targets=("fg",), steps=2, seed=0), [8 / 255]),
        Sweep("image_fgsm", FGSM(targets=("image",)), [8 / 255]),  # through the views
        Sweep("transfer", FGSM(targets=("fg",)), [8 / 255], source="fg_only"),
    ]
    rows = robustness_sweep(models, data, sweeps, batch_size=8, progress=False)
    assert {r["n"] for r in rows} == {len(data)}
    joint = models["joint"]
    shift = feature_shift(joint, data, GaussianBlur(2.0, targets=("fg",)), batch_size=8)
    assert shift["bg"]["relative_l2"] == 0.0 and shift["fg"]["relative_l2"] > 0
    assert set(modality_reliance(joint, data, batch_size=8)) == {"bg", "fg"}
    feats = FeatureCache(tmp_path, progress=False).features(joint, data)
    rows = robustness_sweep(
        {"joint": joint}, feats, [Sweep("noise", FGSM(targets=("fg",)), [0.1])], progress=False
    )
    assert rows[-1]["n"] == len(data)


def test_feature_cache_with_a_perturbation_follows_the_model(data, tmp_path):
    model = float64_model()
    blur = GaussianBlur(2.0, targets=("fg",))
    feats = FeatureCache(tmp_path, progress=False).features(model, data, perturbation=blur)
    assert feats.features["fg"].shape == (len(data), 8)


def test_sanity_probe_and_attacks_follow_the_model(data):
    model = float64_model()
    inputs = {k: data.tensors[k][:8] for k in ("fg", "bg")}
    labels = data.labels[:8]
    assert check_model("m", model, inputs, labels, [(FGSM(targets=("fg",)), 8 / 255)]) == []
    adv = PGD(eps=8 / 255, steps=2, targets=("fg",))(model, inputs, labels)
    assert adv["fg"].dtype == torch.float64 and adv["bg"].dtype == torch.float64


def test_adversarial_training_on_a_view_of_a_model_with_views(data):
    # The batch holds the raw image and both views: an attack on "fg" trains on the views.
    model = float64_model(("bg", "fg"))
    attack = FGSM(eps=2 / 255, targets=("fg",))
    history = Trainer(model, epochs=1, batch_size=8, progress=False, adversarial=attack).fit(data)
    assert torch.isfinite(torch.tensor(history[-1]["train_loss"]))
    raw = FGSM(eps=2 / 255, targets=("image",))
    Trainer(model, epochs=1, batch_size=8, progress=False, adversarial=raw).fit(data)
