import pytest
import torch

from modfuse import FusionModel
from modfuse.attacks import GaussianBlur
from modfuse.data import CocoContext, FeatureCache, make_loader
from tests.data.conftest import split


def frozen_model() -> FusionModel:
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 4, "depth": 2}
    return FusionModel({"fg": enc, "bg": enc}, num_classes=6).eval()


def count_forwards(model):
    calls = {m: 0 for m in model.modalities}
    for m in model.modalities:
        model.encoders[m].register_forward_hook(lambda *_, m=m: calls.__setitem__(m, calls[m] + 1))
    return calls


@pytest.fixture
def data(coco_root):
    return CocoContext(*split(coco_root), size=24)


def test_second_run_computes_nothing(data, tmp_path):
    model = frozen_model()
    calls = count_forwards(model)
    first = FeatureCache(tmp_path, batch_size=16, progress=False).features(model, data)
    assert calls == {"fg": 4, "bg": 4}  # 60 items in batches of 16
    cache = FeatureCache(tmp_path, batch_size=16, progress=False)  # a new run, same folder
    second = cache.features(model, data)
    assert calls == {"fg": 4, "bg": 4} and cache.computed == []
    for m in ("fg", "bg"):
        assert torch.equal(first.features[m], second.features[m])
    assert torch.equal(second.labels, torch.tensor([data[i]["label"] for i in range(len(data))]))
    # And the cached features are the model's features.
    batch = next(iter(make_loader(data, batch_size=5)))
    with torch.no_grad():
        torch.testing.assert_close(
            second.features["fg"][:5], model.encode(model.select(batch))["fg"]
        )


def test_changed_weights_invalidate_only_that_modality(data, tmp_path):
    model = frozen_model()
    cache = FeatureCache(tmp_path, batch_size=32, progress=False)
    before = cache.features(model, data)
    with torch.no_grad():
        next(model.encoders["fg"].parameters()).add_(0.1)
    after = cache.features(model, data)
    assert cache.computed == ["fg"]
    assert not torch.equal(before.features["fg"], after.features["fg"])
    assert torch.equal(before.features["bg"], after.features["bg"])


def test_perturbation_and_dataset_are_part_of_the_key(data, coco_root, tmp_path):
    model = frozen_model()
    cache = FeatureCache(tmp_path, batch_size=32, progress=False)
    clean = cache.features(model, data)
    blurred = cache.features(model, data, perturbation=GaussianBlur(sigma=2.0, targets=("fg",)))
    assert cache.computed == ["fg"]  # bg's inputs are untouched: its entry is reused
    assert not torch.equal(clean.features["fg"], blurred.features["fg"])
    assert torch.equal(clean.features["bg"], blurred.features["bg"])  # bg untouched by the blur
    other = CocoContext(*split(coco_root), size=24, categories=["ball", "box"])
    cache.features(model, other)
    assert cache.computed == ["bg", "fg"]


def test_damaged_entry_is_rebuilt_not_read(data, tmp_path):
    model = frozen_model()
    cache = FeatureCache(tmp_path, batch_size=32, progress=False)
    good = cache.features(model, data)
    entry = next(tmp_path.glob("fg-*.safetensors"))
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # a half-written file
    again = cache.features(model, data)
    assert cache.rebuilt == [entry.name] and cache.computed == ["fg"]
    assert torch.equal(good.features["fg"], again.features["fg"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_head_trains_on_cached_features_without_encoders(data, tmp_path):
    model = frozen_model()
    feats = FeatureCache(tmp_path, progress=False).features(model, data)
    calls = count_forwards(model)
    batch = next(iter(make_loader(feats, batch_size=16)))
    loss = torch.nn.functional.cross_entropy(model.fuse(model.select(batch)), batch["label"])
    loss.backward()
    assert calls == {"fg": 0, "bg": 0}
    assert model.fusion.branch("fg").weight.grad is not None


def test_unknown_modality(data, tmp_path):
    with pytest.raises(KeyError, match="modality 'audio' not in the model"):
        FeatureCache(tmp_path).features(frozen_model(), data, modalities=["audio"])
