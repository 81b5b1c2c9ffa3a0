"""The docs' data-flow picture (docs/img/flow.png) says what the code does, and is the picture
its source draws.

docs/flow.mmd names the code behind every node, frame and labelled edge on ``%% code:`` lines.
Each name must import (importlib and an attribute walk) and its last part must be written in
the label, so renaming or moving a method fails here until the chart follows. The solid arrows
must run in the order a FusionModel calls its parts. The PNG carries a hash of flow.mmd and of
docs/make_flow_figure.py, so a chart edited without being redrawn fails here as well.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from modfuse import ContextViews, FusionModel
from modfuse.attacks import Attack

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKED = ("views", "encoders", "fusion", "head")  # FusionModel's parts, in the order they run


@functools.cache
def script():
    """docs/make_flow_figure.py as a module (docs/ is no package)."""
    spec = importlib.util.spec_from_file_location("make_flow_figure", DOCS / "make_flow_figure.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their own module up while built
    spec.loader.exec_module(module)
    return module


@functools.cache
def chart():
    return script().parse((DOCS / "flow.mmd").read_text(encoding="utf-8"))


def tiny_model() -> FusionModel:
    return FusionModel(
        {"fg": "small_cnn", "bg": "small_cnn"}, "concat", num_classes=3, views=ContextViews(16)
    )


# Classes whose instance attributes (set in __init__) the chart may name: how to build one.
INSTANCES = {FusionModel: tiny_model, Attack: lambda: Attack(targets=("fg",))}


def resolve(name: str) -> Any:
    """The object a dotted name stands for: the longest importable module prefix, then
    attributes (on an instance, for attributes a class sets in ``__init__``). A name that
    works only through a deprecation shim does not count."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            break
        except ModuleNotFoundError as err:
            if err.name not in {".".join(parts[:j]) for j in range(1, i + 1)}:
                raise  # a module that exists but fails to import
    else:
        raise AssertionError(f"{name}: no module {parts[0]!r}")
    for attr in parts[i:]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            found = hasattr(obj, attr)
        shim = [w for w in caught if issubclass(w.category, DeprecationWarning)]
        if any(attr in str(w.message) for w in shim):
            raise AssertionError(f"{name}: {attr!r} is deprecated: {shim[0].message}")
        if found:
            obj = getattr(obj, attr)
        elif obj in INSTANCES and hasattr(INSTANCES[obj](), attr):
            obj = getattr(INSTANCES[obj](), attr)
        else:
            raise AssertionError(f"{name}: {obj!r} has no attribute {attr!r}")
    return obj


def code_names() -> list[tuple[str, str]]:
    return [(key, name) for key, names in chart().code.items() for name in names]


def test_every_node_and_frame_names_its_code():
    c = chart()
    unnamed = [k for k in [*c.nodes, *c.frames] if not c.code.get(k)]
    assert not unnamed, f"flow.mmd: add a '%% code:' line for {unnamed}"
    edges = {e.key for e in c.edges}
    stray = [k for k in c.code if k not in c.nodes and k not in c.frames and k not in edges]
    assert not stray, f"flow.mmd: '%% code:' lines for {stray}, which the chart does not have"
    assert len(code_names()) >= 15, "the chart should name the code of its whole flow"


@pytest.mark.parametrize("key, name", code_names(), ids=lambda v: v)
def test_code_name_resolves_and_is_in_its_label(key, name):
    resolve(name)
    last = name.rsplit(".", 1)[-1]
    label = chart().label(key)
    assert last in label, (
        f"flow.mmd: {key} stands for {name}, but its label {label!r} lacks {last!r}"
    )


def test_resolve_rejects_wrong_and_moved_names():
    assert resolve("modfuse.FusionModel.select") is FusionModel.select
    assert isinstance(resolve("modfuse.FusionModel.encoders"), torch.nn.ModuleDict)
    for wrong in ("modfuse.FusionModel.pick", "modfuse.nowhere.Thing", "modfuse.data.Nope"):
        with pytest.raises(AssertionError, match="no attribute|no module"):
            resolve(wrong)
    # An old name kept alive by a deprecation shim is no name to draw (and may be gone).
    with pytest.raises(AssertionError, match="deprecated|no attribute"):
        resolve("modfuse.HeadView")


def test_solid_arrows_run_in_the_order_the_model_calls_its_parts():
    """Run a FusionModel with views on a dataset-style batch and record which of its parts run
    when; every solid arrow between nodes standing for those parts must point forwards."""
    c = chart()
    part = {}
    for key, names in c.code.items():
        for name in names:
            owner, _, last = name.rpartition(".")
            if last in HOOKED and resolve(owner) is FusionModel:
                part[key] = last
    model = tiny_model()
    calls: list[str] = []
    for name in HOOKED:
        modules = getattr(model, name)
        for module in modules.values() if isinstance(modules, torch.nn.ModuleDict) else [modules]:
            module.register_forward_hook(lambda *_, name=name: calls.append(name))
    mask = torch.zeros(2, 1, 24, 24)
    mask[:, :, 6:18, 4:16] = 1
    batch = {"image": torch.rand(2, 3, 24, 24), "mask": mask, "label": torch.tensor([0, 1])}
    model(model.select(batch))
    first = {name: calls.index(name) for name in HOOKED}
    assert set(part.values()) == set(HOOKED), f"the chart's flow shows {set(part.values())}"
    solid = [(e.source, e.target) for e in c.edges if not e.dashed]
    checked = [(a, b) for a, b in solid if a in part and b in part]
    assert len(checked) >= 4
    for a, b in checked:
        assert first[part[a]] < first[part[b]], f"{a} -> {b}, but {part[b]} runs first"
    select = [e for e in c.edges if "modfuse.FusionModel.select" in c.code.get(e.key, [])]
    assert select and not select[0].dashed and part.get(select[0].target) == "views"


def test_png_is_drawn_from_the_current_source():
    s = script()
    stamped = s.png_digest(s.OUT)
    assert stamped == s.source_digest(), (
        "docs/img/flow.png was not drawn from the current docs/flow.mmd and "
        "docs/make_flow_figure.py: run python docs/make_flow_figure.py"
    )


def test_png_fits_one_screen():
    from PIL import Image

    s = script()
    with Image.open(s.OUT) as image:
        width, height = image.size
    assert width <= s.MAX_W and height <= s.MAX_H, (width, height)
    assert s.OUT.stat().st_size < s.MAX_BYTES


def test_chart_draws_without_overlaps(tmp_path):
    """The script draws the current chart: its layout check passes, the stamp is written."""
    from PIL import Image

    s = script()
    lay = s.draw(chart(), tmp_path / "flow.png", "test")
    with Image.open(tmp_path / "flow.png") as drawn:
        assert drawn.size == lay.size
    assert s.png_digest(tmp_path / "flow.png") == "test"


def test_layout_check_refuses_an_overlap_and_an_arrow_through_a_box(tmp_path):
    s = script()
    c = s.parse((DOCS / "flow.mmd").read_text(encoding="utf-8"))
    c.at["A2"] = c.at["EF"]  # an attack box on top of the fg encoder
    with pytest.raises(ValueError, match="boxes (A2 and EF|EF and A2) overlap"):
        s.draw(c, tmp_path / "flow.png", "test")
    c = s.parse((DOCS / "flow.mmd").read_text(encoding="utf-8"))
    c.at["SW"] = (0, 4)  # the sweep's arrow to the sample now crosses the attack boxes
    with pytest.raises(ValueError, match="edge SW->S runs through box"):
        s.draw(c, tmp_path / "flow.png", "test")
    assert not (tmp_path / "flow.png").exists()


def test_concepts_page_opens_with_the_flow_and_a_caption():
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    intro = text.split("\n## ", 1)[0]
    image = re.search(r"!\[[^\]]+\]\(img/flow\.png\)\n\n(\*[^*]+\*)\n", intro)
    assert image, "concepts.md: show img/flow.png before the first section, with a caption"
    sentences = re.findall(r"[.!?](?:\s|\*$)", image.group(1))
    assert 1 <= len(sentences) <= 3, image.group(1)
