"""What ``import modfuse`` offers: the names users call, and no pre-release aliases."""

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import modfuse
from modfuse import _registry, model

ROOT = Path(__file__).parents[1]
USER_NAMES = {
    "FusionModel",
    "ContextViews",
    "Trainer",
    "robustness_sweep",
    "Sweep",
    "register_encoder",
    "register_fusion",
    "register_attack",
    "register_regularizer",
    "__version__",
}
# Names kept for modfuse's own earlier layout, dropped before the first release: none works.
DROPPED = (
    "ATTACKS",
    "ENCODERS",
    "FUSIONS",
    "REGULARIZERS",
    "Registry",
    "HeadView",
    "list_encoders",
    "list_fusions",
    "list_attacks",
    "list_regularizers",
)
# Module paths of the earlier flat layout, each now in a subpackage.
OLD_MODULES = (
    "modfuse.evaluate",
    "modfuse.train",
    "modfuse.checkpoint",
    "modfuse.feature_head",
    "modfuse.views",
    "modfuse.report",
    "modfuse.sweep_work",
    "modfuse.sanity",
    "modfuse.tensor_files",
    "modfuse.data.coco_load",
    "modfuse.data.synthetic_world",
)


def test_all_holds_what_users_call_and_no_registry_aliases():
    assert set(modfuse.__all__) == USER_NAMES
    for name in modfuse.__all__:
        assert getattr(modfuse, name) is not None
    from modfuse.robustness.sweep import Sweep
    from modfuse.training.trainer import Trainer

    assert modfuse.Trainer is Trainer
    assert modfuse.Sweep is Sweep


def test_names_the_readme_and_docs_import_are_exported():
    used = set()
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for match in re.finditer(r"from modfuse import ([^\n]+)", path.read_text()):
            names = match.group(1).split("#")[0].replace("(", "").replace(")", "")
            used |= {n.strip() for n in names.split(",") if n.strip()}
    assert used, "no `from modfuse import` found in README.md or docs/"
    assert used <= USER_NAMES | {"distributed"}, used - USER_NAMES


@pytest.mark.parametrize("name", DROPPED)
def test_pre_release_aliases_are_gone(name):
    with pytest.raises(AttributeError, match=f"no attribute {name!r}"):
        getattr(modfuse, name)
    assert not hasattr(model, name)


def test_registry_get_is_gone_and_resolve_is_its_replacement():
    assert not hasattr(_registry.Registry, "get")
    found = _registry.FUSIONS.resolve("concat")
    built = _registry.FUSIONS.create("concat", in_dims={"a": 2}, out_dim=3)
    assert found.factory is type(built)


@pytest.mark.parametrize("module", OLD_MODULES)
def test_old_module_paths_are_gone(module):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(module)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        modfuse.nope  # noqa: B018


def test_star_import_and_plain_import_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace: dict = {}
        exec("from modfuse import *", namespace)
    assert USER_NAMES - {"__version__"} <= set(namespace)


def test_import_modfuse_leaves_train_and_evaluate_unimported():
    # They pull in data loading, sweeps and reports: `modfuse list` should not pay for them.
    code = "import sys, modfuse; print(sorted(m for m in sys.modules if m in %r))"
    heavy = ("modfuse.training", "modfuse.robustness", "modfuse.training.trainer")
    out = subprocess.run(
        [sys.executable, "-c", code % (heavy,)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
