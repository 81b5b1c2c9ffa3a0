import os
import time

import numpy as np
import pytest
import torch

import modfuse.data.hashing as hashing
from modfuse import FusionModel
from modfuse.attacks import GaussianBlur
from modfuse.data import CocoContext, FeatureCache, StackedDataset, make_loader
from modfuse.data.hashing import dataset_fingerprint
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


def stacked(n: int = 20) -> StackedDataset:
    g = torch.Generator().manual_seed(1)
    return StackedDataset(
        {"fg": torch.rand(n, 3, 16, 16, generator=g), "bg": torch.rand(n, 3, 16, 16, generator=g)},
        torch.randint(0, 6, (n,), generator=g),
    )


def test_amp_features_are_not_served_to_a_full_precision_cache(tmp_path):
    model, d = frozen_model(), stacked()
    low = FeatureCache(tmp_path, batch_size=8, progress=False, amp=True).features(model, d)
    cache = FeatureCache(tmp_path, batch_size=8, progress=False, amp=False)
    full = cache.features(model, d)
    assert cache.computed == ["bg", "fg"]  # the bfloat16 entries were served before
    want = FeatureCache(tmp_path / "alone", batch_size=8, progress=False).features(model, d)
    for m in ("fg", "bg"):
        assert torch.equal(full.features[m], want.features[m])
        assert not torch.equal(low.features[m], full.features[m])  # bfloat16 differs
    again = FeatureCache(tmp_path, batch_size=8, progress=False, amp=True)
    assert torch.equal(again.features(model, d).features["fg"], low.features["fg"])
    assert again.computed == []  # each precision reads its own entry
    assert len(list(tmp_path.glob("*.safetensors"))) == 4


def test_a_dataset_without_fingerprint_is_keyed_by_every_item(tmp_path):
    model, d = frozen_model(), stacked()
    items = [d[i] for i in range(len(d))]  # a list: no fingerprint(), hashed by content
    cache = FeatureCache(tmp_path, batch_size=8, progress=False)
    cache.features(model, items)
    changed = list(items)
    changed[2] = {**items[2], "fg": items[2]["fg"].flip(-1)}  # an item 16 samples missed
    got = cache.features(model, changed)
    assert cache.computed == ["bg", "fg"]  # another dataset (16 sampled items: the same one)
    with torch.no_grad():
        want = model.encoders["fg"](torch.stack([s["fg"] for s in changed]))
    torch.testing.assert_close(got.features["fg"], want)
    print_of = dataset_fingerprint
    assert print_of([{**s} for s in items]) == print_of(items)  # equal content, equal key
    for i, edit in [(7, {"id": "b"}), (12, {"extra": np.ones(2)}), (17, {"label": 5.0})]:
        tagged = [{**s, "id": "a", "extra": np.zeros(2)} for s in items]
        before = print_of(tagged)
        tagged[i] = {**tagged[i], **edit}
        assert print_of(tagged) != before, (i, edit)


def test_a_dataset_that_cannot_be_hashed_is_computed_with_a_warning_not_cached(tmp_path):
    model, d = frozen_model(), stacked(6)
    items = [{**d[i], "meta": object()} for i in range(len(d))]
    cache = FeatureCache(tmp_path, batch_size=8, progress=False)
    assert cache.key(model, "fg", items) is None
    why = (
        r"^features of \['fg'\] are computed and not cached: cannot hash item 0\['meta'\]: "
        r"expected tensors.*got builtins\.object; give the dataset a fingerprint\(\) method"
    )
    with pytest.warns(UserWarning, match=why):
        feats = cache.features(model, items, modalities=["fg"])
    assert cache.uncached == ["fg"] and not list(tmp_path.glob("*.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(feats.features["fg"], model.encoders["fg"](d.tensors["fg"]))
    refused = r"object.*give the dataset a fingerprint"
    with pytest.raises(hashing.UnhashableSampleError, match=refused):
        dataset_fingerprint(items)


def test_temporary_files_of_a_killed_write_are_removed_when_a_cache_opens(tmp_path):
    model, d = frozen_model(), stacked(6)
    FeatureCache(tmp_path, progress=False).features(model, d)
    entries = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    old = time.time() - 3600
    left = [".fg-0123abcd.safetensors.1a2b3c4d.tmp", ".tmpAb12Cd"]  # ours, safetensors'
    fresh = ".bg-0123abcd.safetensors.9f8e7d6c.tmp"  # a concurrent writer's, still written
    others = ["notes.tmp", ".fg-0123abcd.safetensors", ".tmp", "keep.txt"]
    for name in [*left, fresh, *others]:
        (tmp_path / name).write_bytes(b"half an entry")
    for name in [*left, *others]:
        os.utime(tmp_path / name, (old, old))
    (tmp_path / ".dir.safetensors.1a2b3c4d.tmp").mkdir()  # not a file: never removed
    os.utime(tmp_path / ".dir.safetensors.1a2b3c4d.tmp", (old, old))
    cache = FeatureCache(tmp_path, progress=False)
    remaining = sorted(p.name for p in tmp_path.iterdir())
    want = [*entries, fresh, *others, ".dir.safetensors.1a2b3c4d.tmp"]
    assert remaining == sorted(want)
    assert sorted(cache.removed) == sorted(left)
    cache.features(model, d)
    assert cache.computed == []  # the entries themselves are untouched
    assert FeatureCache(tmp_path / "new", progress=False).removed == []  # no folder yet
