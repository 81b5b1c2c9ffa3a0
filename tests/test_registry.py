import importlib
import sys

import pytest

from modfuse import register_attack, register_encoder, register_fusion, register_regularizer
from modfuse._registry import ENCODERS, FUSIONS, Registry, Resolved


def make_registry() -> Registry:
    reg: Registry = Registry("widget")

    @reg.register("box")
    class Box:
        def __init__(self, size: int = 1, colour: str = "red") -> None:
            self.size, self.colour = size, colour

    @reg.register("family")
    def family(variant: str, scale: int = 1) -> tuple[str, int]:
        return variant, scale

    return reg


def test_register_returns_object_unchanged():
    reg: Registry = Registry("widget")

    class Thing:
        pass

    assert reg.register("thing")(Thing) is Thing


def test_duplicate_name_is_an_error_naming_both_objects():
    reg = make_registry()
    box = reg.resolve("box").factory
    with pytest.raises(ValueError, match="'box' is already registered") as err:
        reg.register("box")(dict)
    assert "make_registry.<locals>.Box" in str(err.value) and "builtins.dict" in str(err.value)
    assert "override=True" in str(err.value)
    assert reg.resolve("box").factory is box  # the refused one changed nothing


def test_registering_the_same_object_again_is_a_no_op():
    reg = make_registry()
    box = reg.resolve("box").factory
    assert reg.register("box")(box) is box
    assert reg.names() == ["box", "family"] and reg.resolve("box").factory is box


def test_override_replaces_and_the_old_factory_is_gone():
    reg = make_registry()
    old = reg.resolve("box").factory
    reg.register("box", override=True)(dict)
    assert reg.resolve("box").factory is dict
    assert reg.create({"name": "box", "a": 1}) == {"a": 1}
    assert reg.names() == ["box", "family"]
    assert old not in reg._factories.values()


@pytest.mark.parametrize(
    "decorator,registry_kind",
    [
        (register_encoder, "encoder"),
        (register_fusion, "fusion"),
        (register_attack, "attack"),
        (register_regularizer, "regularizer"),
    ],
)
def test_public_decorators_take_override(decorator, registry_kind):
    registry = decorator.__self__
    assert registry.kind == registry_kind
    try:
        decorator("test_override_probe")(list)
        with pytest.raises(ValueError, match="'test_override_probe' is already registered"):
            decorator("test_override_probe")(tuple)
        decorator("test_override_probe", override=True)(tuple)
        assert registry.resolve("test_override_probe").factory is tuple
    finally:
        registry.unregister("test_override_probe")


def test_a_module_imported_twice_registers_again_without_error(tmp_path, monkeypatch):
    # A reload, a notebook cell run again, or one file imported under two module names
    # defines new class objects from the same source: that is not a clash.
    source = (
        "from modfuse._registry import ENCODERS\n"
        "@ENCODERS.register('test_twice_probe')\n"
        "class Probe:\n"
        "    out_dim = 1\n"
    )
    (tmp_path / "probe_mod.py").write_text(source)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "probe_mod.py").symlink_to(tmp_path / "probe_mod.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        first = importlib.import_module("probe_mod")
        again = importlib.reload(first)
        assert ENCODERS.resolve("test_twice_probe").factory is again.Probe
        other_name = importlib.import_module("pkg.probe_mod")
        assert ENCODERS.resolve("test_twice_probe").factory is other_name.Probe
        assert ENCODERS.names("test_twice*") == ["test_twice_probe"]
        # A different class of the same name from another file is still a clash.
        (tmp_path / "clash_mod.py").write_text(source)
        with pytest.raises(ValueError, match="'test_twice_probe' is already registered"):
            importlib.import_module("clash_mod")
    finally:
        ENCODERS.unregister("test_twice_probe")
        for name in ("probe_mod", "pkg.probe_mod", "pkg", "clash_mod"):
            sys.modules.pop(name, None)


def test_create_from_name_dict_and_object_with_overrides():
    reg = make_registry()
    assert reg.create("box").size == 1
    built = reg.create({"name": "box", "size": 3, "colour": "blue"}, colour="green")
    assert (built.size, built.colour) == (3, "green")
    obj = object()
    assert reg.create(obj) is obj
    with pytest.raises(TypeError, match="overrides"):
        reg.create(obj, size=2)


def test_resolve_names_factory_and_arguments():
    reg = make_registry()
    found = reg.resolve({"name": "family:resnet18", "scale": 2})
    assert isinstance(found, Resolved)
    assert (found.name, found.args, found.kwargs) == (
        "family:resnet18",
        ("resnet18",),
        {"scale": 2},
    )
    assert found.factory is reg.resolve("family").factory
    assert found.build() == ("resnet18", 2) and found.build(scale=5) == ("resnet18", 5)
    with pytest.raises(TypeError, match="must be a name or a"):
        reg.resolve(3)


def test_get_is_gone_resolve_gives_the_factory_and_its_args():
    reg = make_registry()
    assert not hasattr(reg, "get")  # a pre-release alias of resolve, dropped
    found = reg.resolve("family:x")
    assert found.factory is reg.resolve("family").factory and found.args == ("x",)


def test_family_variant_names():
    reg = make_registry()
    assert reg.create("family:resnet18", scale=2) == ("resnet18", 2)
    assert "family:anything" in reg
    assert "other:x" not in reg
    assert "family:" not in reg  # a family with no variant is not a name


def test_unknown_name_lists_registered_names():
    reg = make_registry()
    suggested = r"unknown widget 'bax'; did you mean 'box'\? registered: \['box', 'family'\]"
    with pytest.raises(KeyError, match=suggested):
        reg.create("bax")
    with pytest.raises(KeyError, match=r"unknown widget 'zzzz'; registered: \['box', 'family'\]"):
        reg.create("zzzz")  # nothing close: no suggestion
    with pytest.raises(KeyError, match="'name' key"):
        reg.create({"size": 2})


def test_unknown_builtin_name_suggests_the_close_one():
    """The issue's case: "fgms" names FGSM, in the registry and in a config check."""
    from modfuse._registry import ATTACKS
    from modfuse.config.checks import check_component

    with pytest.raises(KeyError, match="did you mean 'fgsm'"):
        ATTACKS.create("fgms")
    with pytest.raises(ValueError, match="unknown attack 'fgms'; did you mean 'fgsm'"):
        check_component(ATTACKS, {"name": "fgms", "targets": ["fg"]})


def test_names_filter_with_fnmatch_and_exclude():
    reg = make_registry()
    assert reg.names("b*") == ["box"]
    assert reg.names() == ["box", "family"]
    assert reg.names(exclude=["box"]) == ["family"]
    assert reg.names(exclude="family") == ["box"]  # one name, not its letters
    assert reg.names("b*", exclude={"box", "not-registered"}) == []


def test_builtin_components_are_registered():
    assert {"small_cnn", "mlp", "timm"} <= set(ENCODERS.names())
    expected = {"concat", "sum", "gated", "recurrent", "attention", "tensor", "lowrank"}
    assert expected <= set(FUSIONS.names())
    assert FUSIONS.names("con*") == ["concat"]
