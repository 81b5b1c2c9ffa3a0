"""The feature cache asks contracts (modfuse.data.contracts) of what it is given, never probes."""

import pytest
import torch
from torch.utils.data import IterableDataset

import modfuse.data.cache as cache_module
import modfuse.data.hashing as hashing
from modfuse import FusionModel
from modfuse.attacks import GaussianBlur
from modfuse.data import FeatureCache, StackedDataset
from modfuse.data.contracts import CacheableModel, Fingerprinted, Perturbation
from modfuse.data.hashing import dataset_fingerprint


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
