"""The feature cache asks contracts (modfuse.data.contracts) of what it is given, never probes."""

import numpy as np
import pytest
import torch
from torch.utils.data import IterableDataset, Subset

import modfuse.data.cache as cache_module
import modfuse.data.hashing as hashing
from modfuse import FusionModel
from modfuse.attacks import FGSM, GaussianBlur, GaussianNoise
from modfuse.data import FeatureCache, StackedDataset, collate_dicts, make_loader
from modfuse.data.contracts import CacheableModel, Fingerprinted, Perturbation
from modfuse.data.hashing import dataset_fingerprint
from modfuse.robustness import Sweep, robustness_sweep
from modfuse.training.trainer import Trainer


def model() -> FusionModel:
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 4, "depth": 2}
    return FusionModel({"fg": enc, "bg": enc}, num_classes=3).eval()


def data(n: int = 8) -> StackedDataset:
    g = torch.Generator().manual_seed(1)
    return StackedDataset(
        {"fg": torch.rand(n, 3, 16, 16, generator=g), "bg": torch.rand(n, 3, 16, 16, generator=g)},
        torch.randint(0, 3, (n,), generator=g),
    )


def darken(model, inputs, labels):
    """A plain function: it says neither which keys it changes nor what it depends on."""
    return {k: v * 0.5 for k, v in inputs.items()}


class Darken:
    """A user's perturbation that meets the contract without subclassing Attack."""

    targets = ("fg",)
    depends_on_model = False

    def __call__(self, model, inputs, labels):
        return {k: v * 0.5 if k in self.targets else v for k, v in inputs.items()}


def test_a_perturbation_without_the_contract_is_refused_not_served_clean_features(tmp_path):
    m, d = model(), data()
    cache = FeatureCache(tmp_path, batch_size=4, progress=False)
    cache.features(m, d)  # the clean entries exist
    assert not isinstance(darken, Perturbation)
    # Probed for `targets` and found none, it was taken as perturbing nothing: the clean
    # entries came back as its features.
    with pytest.raises(TypeError, match=r"perturbation must be a modfuse Attack.*got function"):
        cache.features(m, d, perturbation=darken)
    with pytest.raises(TypeError, match=r"modfuse\.data\.contracts\.Perturbation"):
        cache.key(m, "fg", d, darken)


def test_a_perturbation_meeting_the_contract_need_not_be_an_attack(tmp_path):
    m, d = model(), data()
    assert isinstance(Darken(), Perturbation)
    cache = FeatureCache(tmp_path, batch_size=4, progress=False)
    clean = cache.features(m, d)
    with pytest.warns(UserWarning, match=r"\['fg'\] under .*not cached: Darken is not"):
        dark = cache.features(m, d, perturbation=Darken())
    assert cache.uncached == ["fg"] and cache.computed == ["fg"]  # bg: the clean entry
    assert torch.equal(dark.features["bg"], clean.features["bg"])
    with torch.no_grad():
        want = m.encoders["fg"](d.tensors["fg"] * 0.5)
    torch.testing.assert_close(dark.features["fg"], want)


def test_a_model_without_the_contract_is_a_type_error_naming_it(tmp_path):
    cache = FeatureCache(tmp_path, progress=False)
    assert isinstance(model(), CacheableModel)
    assert not isinstance(torch.nn.Linear(2, 2), CacheableModel)
    with pytest.raises(TypeError, match=r"CacheableModel, e\.g\. a FusionModel\), got Linear"):
        cache.features(torch.nn.Linear(2, 2), data())
    with pytest.raises(TypeError, match="got Linear"):
        cache.key(torch.nn.Linear(2, 2), "fg", data())


def test_a_dataset_is_keyed_by_its_own_fingerprint_else_by_its_samples():
    class Named(StackedDataset):
        def fingerprint(self) -> str:
            return "named-1"

    d = data()
    named = Named(d.tensors, d.labels)
    assert isinstance(named, Fingerprinted) and dataset_fingerprint(named) == "named-1"
    samples = [d[i] for i in range(len(d))]  # a list: no fingerprint(), hashed by content
    assert not isinstance(samples, Fingerprinted)
    assert dataset_fingerprint(samples) == dataset_fingerprint(list(samples))
    samples[-1] = {**samples[-1], "label": (samples[-1]["label"] + 1) % 3}
    assert dataset_fingerprint(samples) != dataset_fingerprint([d[i] for i in range(len(d))])


def test_a_subset_of_a_fingerprinted_dataset_is_keyed_without_reading_items():
    class Unreadable(StackedDataset):
        def fingerprint(self) -> str:
            return "unreadable-1"

        def __getitem__(self, i):
            raise AssertionError("the fingerprint read an item")

    d = data()
    whole = Unreadable(d.tensors, d.labels)
    first, second = Subset(whole, [0, 1, 2]), Subset(whole, [0, 1, 3])
    assert dataset_fingerprint(first) == dataset_fingerprint(Subset(whole, [0, 1, 2]))
    assert dataset_fingerprint(first) != dataset_fingerprint(second)
    assert dataset_fingerprint(Subset(first, [0])) != dataset_fingerprint(Subset(second, [1]))
    # A subset of a dataset without fingerprint() is hashed item by item, as any other.
    plain = [d[i] for i in range(len(d))]
    assert dataset_fingerprint(Subset(plain, [0, 1])) != dataset_fingerprint(Subset(plain, [0, 2]))


def test_a_dataset_without_a_length_or_a_fingerprint_is_a_type_error():
    class Stream(IterableDataset):
        def __iter__(self):
            yield {"fg": torch.zeros(3, 16, 16), "label": 0}

    with pytest.raises(TypeError, match="map-style dataset with a length.*got Stream"):
        dataset_fingerprint(Stream())


def test_names_keep_their_old_import_paths():
    for name in ("tensor_digest", "module_hash", "dataset_fingerprint"):
        assert vars(cache_module)[name] is vars(hashing)[name]
    blur = GaussianBlur(sigma=1.0)
    assert isinstance(blur, Perturbation) and not blur.depends_on_model


# Item 12: samples holding numpy arrays work exactly as tensors would; an array given as the
# dataset itself is refused with an error naming what was expected.
def numpy_items(n: int = 12) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "fg": rng.random((3, 16, 16), dtype=np.float32),
            "bg": rng.random((3, 16, 16), dtype=np.float32),
            "label": np.int64(i % 3),
        }
        for i in range(n)
    ]


def as_torch(items: list[dict]) -> list[dict]:
    return [{"fg": torch.from_numpy(s["fg"]), "bg": torch.from_numpy(s["bg"]),
             "label": int(s["label"])} for s in items]


def test_numpy_samples_are_batched_as_the_tensors_they_hold():
    items = numpy_items(4)
    got, want = collate_dicts(items), collate_dicts(as_torch(items))
    for k in ("fg", "bg", "label"):
        assert isinstance(got[k], torch.Tensor) and got[k].dtype == want[k].dtype
        assert torch.equal(got[k], want[k])
    doubles = collate_dicts([{"x": np.zeros(2), "y": np.float64(1.5)}])
    assert doubles["x"].dtype == doubles["y"].dtype == torch.float64  # as torch.as_tensor does
    with pytest.raises(TypeError, match=r"sample value 'name': expected a tensor or a numeric "
                       r"numpy array, got a numpy array of dtype <U1"):
        collate_dicts([{"name": np.array(["a", "b"])}])
    mixed = r"cannot batch 'fg': some samples hold a tensor or array, others \['list'\]"
    with pytest.raises(TypeError, match=mixed):
        collate_dicts([{"fg": np.zeros(2)}, {"fg": [0.0, 0.0]}])


def test_numpy_samples_give_what_tensor_samples_give(tmp_path):
    items = numpy_items()
    sweeps = [
        Sweep("fgsm", FGSM(targets=("fg",)), [0.05]),
        Sweep("noise", GaussianNoise(seed=0), [0.2]),
    ]
    rows = {
        kind: robustness_sweep({"m": model()}, data, sweeps, batch_size=5, progress=False)
        for kind, data in [("numpy", items), ("torch", as_torch(items))]
    }
    assert rows["numpy"] == rows["torch"]
    feats = {
        kind: FeatureCache(tmp_path / kind, batch_size=5, progress=False).features(model(), data)
        for kind, data in [("numpy", items), ("torch", as_torch(items))]
    }
    for m in ("fg", "bg"):
        assert torch.equal(feats["numpy"].features[m], feats["torch"].features[m])
    assert torch.equal(feats["numpy"].labels, feats["torch"].labels)
    trained = {}
    for kind, data in [("numpy", items), ("torch", as_torch(items))]:
        trained[kind] = model().train()
        Trainer(trained[kind], epochs=1, batch_size=5, progress=False, seed=0).fit(data)
    want = trained["torch"].state_dict()
    for k, a in trained["numpy"].state_dict().items():
        assert torch.equal(a, want[k]), k
    held = StackedDataset({"fg": np.stack([s["fg"] for s in items])}, np.arange(12) % 3)
    assert isinstance(held.tensors["fg"], torch.Tensor) and held.labels.dtype == torch.int64
    assert held.fingerprint() == StackedDataset(
        {"fg": torch.from_numpy(np.stack([s["fg"] for s in items]))}, torch.arange(12) % 3
    ).fingerprint()


def test_a_numpy_array_as_the_dataset_is_refused_naming_what_is_expected(tmp_path):
    array = np.zeros((8, 3, 16, 16), dtype=np.float32)
    expected = (
        r"expected a dataset of dict samples \(\{'<modality>': tensor or numpy array, \.\.\., "
        r"'label': int\}\), got a numpy\.ndarray of shape \(8, 3, 16, 16\); wrap arrays as "
        r"StackedDataset"
    )
    with pytest.raises(TypeError, match=expected):
        make_loader(array)
    with pytest.raises(TypeError, match=expected):
        robustness_sweep({"m": model()}, array, [], batch_size=4, progress=False)
    with pytest.raises(TypeError, match=expected):
        FeatureCache(tmp_path, progress=False).features(model(), array)
    with pytest.raises(TypeError, match=expected):
        Trainer(model(), epochs=1, batch_size=4, progress=False).fit(array)
    with pytest.raises(TypeError, match=r"expected dict samples .*got a sample of type "
                       r"numpy\.ndarray of shape \(3, 16, 16\)"):
        collate_dicts(list(array[:2]))
