"""What ``import modfuse`` offers: the names users call, and old names that still work."""

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import modfuse
from modfuse import _registry, feature_head, model

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
# Exported before, now deprecated: name -> (the object, the new import path in the warning).
MOVED = {
    "ATTACKS": (_registry.ATTACKS, "from modfuse._registry import ATTACKS"),
    "ENCODERS": (_registry.ENCODERS, "from modfuse._registry import ENCODERS"),
    "FUSIONS": (_registry.FUSIONS, "from modfuse._registry import FUSIONS"),
    "REGULARIZERS": (_registry.REGULARIZERS, "from modfuse._registry import REGULARIZERS"),
    "Registry": (_registry.Registry, "from modfuse._registry import Registry"),
    "HeadView": (feature_head.FeatureHead, "from modfuse.feature_head import FeatureHead"),
    "list_encoders": (_registry.ENCODERS.names, "modfuse._registry.ENCODERS.names()"),
    "list_fusions": (_registry.FUSIONS.names, "modfuse._registry.FUSIONS.names()"),
    "list_attacks": (_registry.ATTACKS.names, "modfuse._registry.ATTACKS.names()"),
    "list_regularizers": (_registry.REGULARIZERS.names, "modfuse._registry.REGULARIZERS.names()"),
}


def test_all_holds_what_users_call_and_no_registry_aliases():
    assert set(modfuse.__all__) == USER_NAMES
    for name in modfuse.__all__:
        assert getattr(modfuse, name) is not None
    assert modfuse.Trainer is __import__("modfuse.train").train.Trainer
    assert modfuse.Sweep is __import__("modfuse.evaluate").evaluate.Sweep


def test_names_the_readme_and_docs_import_are_exported():
    used = set()
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for match in re.finditer(r"from modfuse import ([^\n]+)", path.read_text()):
            names = match.group(1).split("#")[0].replace("(", "").replace(")", "")
            used |= {n.strip() for n in names.split(",") if n.strip()}
    assert used, "no `from modfuse import` found in README.md or docs/"
    assert used <= USER_NAMES | {"distributed"}, used - USER_NAMES


@pytest.mark.parametrize("name", sorted(MOVED))
def test_dropped_names_still_work_with_a_warning_naming_the_new_path(name):
    value, instead = MOVED[name]
    with pytest.warns(DeprecationWarning, match=re.escape(f"modfuse.{name} is deprecated")) as rec:
        got = getattr(modfuse, name)
    assert instead in str(rec[0].message)
    assert got == value  # bound methods compare equal, not identical
    assert name not in modfuse.__all__


def test_from_import_of_a_dropped_name_warns_at_the_callers_line():
    with pytest.warns(DeprecationWarning) as rec:
        from modfuse import FUSIONS  # noqa: F401
    assert rec[0].filename == __file__


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
    heavy = ("modfuse.train", "modfuse.evaluate")
    out = subprocess.run(
        [sys.executable, "-c", code % (heavy,)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_old_head_view_name_warns_and_is_the_feature_head():
    with pytest.warns(DeprecationWarning, match="use modfuse.feature_head.FeatureHead"):
        old = model.HeadView
    assert old is feature_head.FeatureHead
