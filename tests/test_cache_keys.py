"""Cache and resume keys hold everything that changes a perturbation's output, or nothing."""

import functools

import pytest
import torch
import torch.nn.functional as F

from modfuse import FusionModel
from modfuse.attacks import FGSM, PGD, Attack, GaussianBlur, GaussianNoise
from modfuse.data import FeatureCache, StackedDataset
from modfuse.robustness import Sweep, robustness_sweep
from modfuse.robustness.resume import ResumeFile


def cross_entropy(logits, labels, reduction="mean"):
    return F.cross_entropy(logits, labels, reduction=reduction)


def toward_label(logits, labels, reduction="mean"):
    """Another loss: FGSM then moves the other way."""
    return -F.cross_entropy(logits, labels, reduction=reduction)


def smoothed(logits, labels, reduction="mean", smoothing=0.0):
    return F.cross_entropy(logits, labels, reduction=reduction, label_smoothing=smoothing)


class AddPattern(Attack):
    """A user attack with a tensor setting: a fixed pattern added to the target."""

    def __init__(self, pattern: torch.Tensor, targets=("fg",), **kw) -> None:
        super().__init__(targets, **kw)
        self.pattern = pattern

    def perturb(self, ctx, x):
        return {k: v + self.pattern for k, v in x.items()}


class Scaled:
    """A callable object: its behaviour lives in its state, which a name cannot show."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, logits, labels, reduction="mean"):
        return self.scale * F.cross_entropy(logits, labels, reduction=reduction)


def make_closure(scale):
    def loss(logits, labels, reduction="mean"):
        return scale * F.cross_entropy(logits, labels, reduction=reduction)

    return loss


def model() -> FusionModel:
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 4, "depth": 2}
    return FusionModel({"fg": enc, "bg": enc}, num_classes=3).eval()


def data(n: int = 12) -> StackedDataset:
    g = torch.Generator().manual_seed(1)
    return StackedDataset(
        {"fg": torch.rand(n, 3, 16, 16, generator=g), "bg": torch.rand(n, 3, 16, 16, generator=g)},
        torch.randint(0, 3, (n,), generator=g),
    )


def fg_features(root, attack) -> tuple[torch.Tensor, FeatureCache]:
    cache = FeatureCache(root, batch_size=6, progress=False)
    return cache.features(model(), data(), ["fg"], perturbation=attack).features["fg"], cache


def test_attacks_differing_only_in_loss_get_their_own_entries(tmp_path):
    first, _ = fg_features(tmp_path / "shared", FGSM(0.1, loss=cross_entropy))
    second, cache = fg_features(tmp_path / "shared", FGSM(0.1, loss=toward_label))
    alone, _ = fg_features(tmp_path / "alone", FGSM(0.1, loss=toward_label))
    assert not torch.equal(first, alone)  # the two losses do give different features
    # Keyed by repr (which leaves the loss out), the second call read the first's entry.
    assert torch.equal(second, alone), "the cache returned the features of the other loss"
    assert cache.computed == ["fg"]
    assert len(list((tmp_path / "shared").glob("*.safetensors"))) == 2


CRITERION = Scaled(2.0)  # a global object: what it does lives in its state


def reads_a_global_object(logits, labels, reduction="mean"):
    return CRITERION(logits, labels, reduction=reduction)


@pytest.mark.parametrize(
    "loss",
    [Scaled(2.0), Scaled(2.0).__call__, reads_a_global_object],
    ids=["callable_object", "bound_method", "global_object"],
)
def test_a_loss_that_cannot_be_identified_is_not_cached(tmp_path, loss):
    attack = FGSM(0.1, loss=loss)
    assert attack.fingerprint() is None
    for _ in range(2):
        with pytest.warns(UserWarning, match=r"\['fg'\] under FGSM.*not cached.*loss_fn"):
            feats, cache = fg_features(tmp_path, attack)
        assert cache.uncached == ["fg"] and cache.computed == ["fg"]  # computed both times
    assert not list(tmp_path.glob("*.safetensors"))
    # Every one of these losses is cross-entropy up to a positive scale: FGSM moves the same way.
    want, _ = fg_features(tmp_path / "keyed", FGSM(0.1))
    torch.testing.assert_close(feats, want)


def test_an_untargeted_modality_is_still_cached_under_an_unkeyable_attack(tmp_path):
    cache = FeatureCache(tmp_path, batch_size=6, progress=False)
    with pytest.warns(UserWarning, match=r"\['fg'\]"):
        cache.features(model(), data(), perturbation=FGSM(0.1, loss=Scaled(1.0)))
    assert cache.uncached == ["fg"] and sorted(cache.computed) == ["bg", "fg"]
    assert len(list(tmp_path.glob("bg-*.safetensors"))) == 1


BASE = dict(eps=0.1, targets=("fg",), ranges={"fg": (0.0, 1.0)}, seed=0, loss=cross_entropy)


@pytest.mark.parametrize(
    "change",
    [
        {"eps": 0.2},
        {"eps": {"fg": 0.1}},
        {"targets": ("bg",)},
        {"targets": ("fg", "bg")},
        {"ranges": {"fg": (0.0, 2.0)}},
        {"ranges": {}},
        {"seed": 1},
        {"seed": None},
        {"loss": toward_label},
        {"loss": functools.partial(smoothed, smoothing=0.1)},
        {"targeted": True},
    ],
    ids=lambda c: next(iter(c)),
)
def test_every_setting_changes_the_key(change):
    assert FGSM(**BASE).fingerprint() == FGSM(**BASE).fingerprint()  # same config, same key
    assert FGSM(**{**BASE, **change}).fingerprint() != FGSM(**BASE).fingerprint()


@pytest.mark.parametrize(
    "a, b",
    [
        (GaussianBlur(sigma=(1.0, 2.0)), GaussianBlur(sigma=(1.0, 3.0))),
        (GaussianBlur(sigma=1.0), GaussianNoise(std=1.0)),  # same settings, other class
        (PGD(steps=3), PGD(steps=4)),
        (PGD(norm="l2"), PGD(norm="linf")),
        (
            FGSM(loss=functools.partial(smoothed, smoothing=0.1)),
            FGSM(loss=functools.partial(smoothed, smoothing=0.2)),
        ),
    ],
)
def test_other_attacks_are_keyed_by_their_settings(a, b):
    assert a.fingerprint() is not None and a.fingerprint() != b.fingerprint()


def test_tensors_are_keyed_by_their_bytes_not_their_repr(tmp_path):
    p1 = torch.zeros(3, 24, 24)  # over 1,000 values: repr shows the corners only
    p2 = p1.clone()
    p2[1, 12, 12] = 0.5
    assert repr(p1) == repr(p2)
    a, b = AddPattern(p1), AddPattern(p2)
    m, d = model(), data()
    cache = FeatureCache(tmp_path, progress=False)
    assert cache.key(m, "fg", d, a) != cache.key(m, "fg", d, b)  # by repr: the same entry
    assert cache.key(m, "fg", d, a) == cache.key(m, "fg", d, AddPattern(p1.clone()))
    assert a.fingerprint() != b.fingerprint()


def test_the_resume_file_keys_the_loss_and_refuses_what_it_cannot_key(tmp_path):
    models, d = {"m": model()}, data()

    def key(attack):
        return ResumeFile(tmp_path / "r.json", models, d, [Sweep("s", attack, [0.1])], 4).key

    assert key(FGSM(loss=cross_entropy)) != key(FGSM(loss=toward_label))
    assert key(FGSM(loss=cross_entropy)) == key(FGSM(loss=cross_entropy))
    sweeps = [Sweep("s", FGSM(loss=Scaled(1.0)), [0.1])]
    with pytest.warns(UserWarning, match=r"resume file .* not used: sweep 's': FGSM\.loss_fn"):
        assert ResumeFile(tmp_path / "r.json", models, d, sweeps, 4).path is None
    with pytest.warns(UserWarning, match="resume file"):
        rows = robustness_sweep(
            models, d, sweeps, batch_size=4, progress=False, resume_file=tmp_path / "r.json"
        )
    assert rows[-1]["n"] == 12 and not (tmp_path / "r.json").exists()


# Item 6b: functions are keyed by their code, not by their name. Each pair defines the same
# module-level name twice (as editing a file and running again does); only what the comment
# names differs between the two.
EDITS = {
    "body": (
        "def edited(logits, labels, reduction='mean'):\n"
        "    return F.cross_entropy(logits, labels, reduction=reduction)\n",
        "def edited(logits, labels, reduction='mean'):\n"
        "    return -F.cross_entropy(logits, labels, reduction=reduction)\n",
    ),
    "constant": (
        "def edited(logits, labels, reduction='mean'):\n"
        "    return 2.0 * F.cross_entropy(logits, labels, reduction=reduction)\n",
        "def edited(logits, labels, reduction='mean'):\n"
        "    return 3.0 * F.cross_entropy(logits, labels, reduction=reduction)\n",
    ),
    "default": (
        "def edited(logits, labels, reduction='mean', scale=2.0):\n"
        "    return scale * F.cross_entropy(logits, labels, reduction=reduction)\n",
        "def edited(logits, labels, reduction='mean', scale=3.0):\n"
        "    return scale * F.cross_entropy(logits, labels, reduction=reduction)\n",
    ),
    "nested_function": (
        "def edited(logits, labels, reduction='mean'):\n"
        "    def inner(x):\n"
        "        return x * 2\n"
        "    return inner(F.cross_entropy(logits, labels, reduction=reduction))\n",
        "def edited(logits, labels, reduction='mean'):\n"
        "    def inner(x):\n"
        "        return x * 3\n"
        "    return inner(F.cross_entropy(logits, labels, reduction=reduction))\n",
    ),
    "helper_it_calls": (
        "def edited_helper(x):\n    return x\n"
        "def edited(logits, labels, reduction='mean'):\n"
        "    return edited_helper(F.cross_entropy(logits, labels, reduction=reduction))\n",
        "def edited_helper(x):\n    return -x\n"
        "def edited(logits, labels, reduction='mean'):\n"
        "    return edited_helper(F.cross_entropy(logits, labels, reduction=reduction))\n",
    ),
    "global_value_it_reads": (
        "EDITED_SCALE = 2.0\n"
        "def edited(logits, labels, reduction='mean'):\n"
        "    return EDITED_SCALE * F.cross_entropy(logits, labels, reduction=reduction)\n",
        "EDITED_SCALE = 3.0\n"
        "def edited(logits, labels, reduction='mean'):\n"
        "    return EDITED_SCALE * F.cross_entropy(logits, labels, reduction=reduction)\n",
    ),
}


def define(source: str):
    """Run ``source`` in this module, as re-running an edited file does: ``edited`` is then a
    module-level function that importing this module by name finds."""
    exec(source, globals())
    return globals()["edited"]


@pytest.mark.parametrize("what", sorted(EDITS))
def test_a_function_edited_in_place_gets_another_key(what):
    before, after = EDITS[what]
    first = define(before)
    key = FGSM(0.1, loss=first).fingerprint()
    second = define(after)
    assert (second.__module__, second.__qualname__) == (first.__module__, first.__qualname__)
    assert key is not None and FGSM(0.1, loss=second).fingerprint() not in (None, key)
    assert FGSM(0.1, loss=define(before)).fingerprint() == key  # the same code, the same key


def test_a_loss_edited_in_place_is_computed_not_read_from_the_old_entry(tmp_path):
    before, after = EDITS["body"]
    first, _ = fg_features(tmp_path / "shared", FGSM(0.1, loss=define(before)))
    edited = FGSM(0.1, loss=define(after))
    second, cache = fg_features(tmp_path / "shared", edited)
    alone, _ = fg_features(tmp_path / "alone", edited)
    assert not torch.equal(first, alone)  # the two bodies do give different features
    # Keyed by module and name, the edited loss read the entry of the first body.
    assert cache.computed == ["fg"] and torch.equal(second, alone)
    assert len(list((tmp_path / "shared").glob("*.safetensors"))) == 2


def test_lambdas_and_closures_are_keyed_by_their_code_and_cell_contents(tmp_path):
    assert FGSM(loss=make_closure(2.0)).fingerprint() == FGSM(loss=make_closure(2.0)).fingerprint()
    assert FGSM(loss=make_closure(2.0)).fingerprint() != FGSM(loss=make_closure(3.0)).fingerprint()
    twice = [lambda logits, labels, reduction="mean": logits.sum() for _ in range(2)]
    negated = lambda logits, labels, reduction="mean": -logits.sum()  # noqa: E731
    keys = {FGSM(loss=f).fingerprint() for f in twice}
    assert len(keys) == 1 and None not in keys
    assert FGSM(loss=negated).fingerprint() not in keys
    # Keyed, such an attack is cached: the second call reads what the first one stored.
    fg_features(tmp_path, FGSM(0.1, loss=make_closure(2.0)))
    again, cache = fg_features(tmp_path, FGSM(0.1, loss=make_closure(2.0)))
    assert cache.computed == [] and cache.uncached == []
    want, _ = fg_features(tmp_path / "keyed", FGSM(0.1))  # cross-entropy up to a scale
    torch.testing.assert_close(again, want)
