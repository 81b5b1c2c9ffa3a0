import pytest

from modfuse import FUSIONS, Registry, list_encoders, list_fusions


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


def test_duplicate_name_is_an_error():
    reg = make_registry()
    with pytest.raises(ValueError, match="'box' is already registered"):
        reg.register("box")(object)


def test_create_from_name_dict_and_object_with_overrides():
    reg = make_registry()
    assert reg.create("box").size == 1
    built = reg.create({"name": "box", "size": 3, "colour": "blue"}, colour="green")
    assert (built.size, built.colour) == (3, "green")
    obj = object()
    assert reg.create(obj) is obj
    with pytest.raises(TypeError, match="overrides"):
        reg.create(obj, size=2)


def test_family_variant_names():
    reg = make_registry()
    assert reg.create("family:resnet18", scale=2) == ("resnet18", 2)
    assert "family:anything" in reg
    assert "other:x" not in reg
    assert "family:" not in reg  # a family with no variant is not a name


def test_unknown_name_lists_registered_names():
    reg = make_registry()
    with pytest.raises(KeyError, match=r"unknown widget 'bax'; registered: \['box', 'family'\]"):
        reg.create("bax")
    with pytest.raises(KeyError, match="'name' key"):
        reg.create({"size": 2})


def test_names_filter_with_fnmatch():
    reg = make_registry()
    assert reg.names("b*") == ["box"]
    assert reg.names() == ["box", "family"]


def test_builtin_components_are_registered():
    assert {"small_cnn", "mlp", "timm"} <= set(list_encoders())
    expected = {"concat", "sum", "gated", "recurrent", "attention", "tensor", "lowrank"}
    assert expected <= set(list_fusions())
    assert FUSIONS.names("con*") == ["concat"]
