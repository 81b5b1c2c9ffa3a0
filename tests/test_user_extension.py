"""A new user adds an encoder, a fusion and an attack: one short file each, one decorator each.

The files are tests/user_encoder.py, tests/user_fusion.py and tests/user_attack.py, written as
a user would write them. Once imported, their components show in ``modfuse list`` and pass the
same contract checks as the built-in ones.
"""

import ast
import importlib
import importlib.util
import inspect
import itertools
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

import tests.attacks.test_all_attacks as attack_contract
import tests.fusion.test_all_fusions as fusion_contract
from modfuse import FusionModel
from modfuse._registry import ATTACKS, ENCODERS, FUSIONS
from modfuse.cli.commands import main

HERE = Path(__file__).parent
# The user's file -> the registry it adds to and the name it registers.
USER_FILES = {
    "user_encoder.py": (ENCODERS, "user_histogram"),
    "user_fusion.py": (FUSIONS, "user_max"),
    "user_attack.py": (ATTACKS, "user_l2_step"),
}


@pytest.fixture
def user() -> dict[str, ModuleType]:
    """The three user modules, imported the ordinary way."""
    return {f[:-3]: importlib.import_module(f"tests.{f[:-3]}") for f in USER_FILES}


def exec_file(filename: str, module_name: str, monkeypatch) -> ModuleType:
    """Import a user file again under another name, as ``import user_fusion`` does from the
    user's own folder (the file is then imported twice: as tests.user_fusion and as this)."""
    spec = importlib.util.spec_from_file_location(module_name, HERE / filename)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("filename", USER_FILES)
def test_each_component_is_one_short_file_with_one_decorator(filename):
    registry, name = USER_FILES[filename]
    source = (HERE / filename).read_text()
    assert len(source.splitlines()) < 60, f"{filename} has {len(source.splitlines())} lines"
    defs = (ast.ClassDef, ast.FunctionDef)
    tree = ast.parse(source)
    decorators = [d for n in ast.walk(tree) if isinstance(n, defs) for d in n.decorator_list]
    assert len(decorators) == 1, f"{filename}: {len(decorators)} decorators"
    (call,) = decorators
    assert isinstance(call, ast.Call) and call.func.id == f"register_{registry.kind}"
    assert [a.value for a in call.args] == [name] and not call.keywords


def test_user_components_appear_in_modfuse_list(user, capsys):
    assert main(["list"]) == 0
    listed = {}
    for line in capsys.readouterr().out.splitlines():
        kind, _, names = line.partition(" ")
        listed[kind] = names.strip().split(", ")
    assert "user_histogram" in listed["encoders"]
    assert "user_max" in listed["fusions"]
    assert "user_l2_step" in listed["attacks"]


def test_importing_a_user_file_twice_does_not_fail(user, monkeypatch):
    originals = {f: reg.resolve(name).factory for f, (reg, name) in USER_FILES.items()}
    try:
        for filename, (registry, name) in USER_FILES.items():
            importlib.import_module(f"tests.{filename[:-3]}")  # cached: nothing runs again
            again = exec_file(filename, filename[:-3], monkeypatch)
            assert registry.names(f"{name}*") == [name]
            # The newest definition is the one built, so it matches the user's module.
            assert registry.resolve(name).factory is vars(again)[originals[filename].__name__]
    finally:
        for filename, (registry, name) in USER_FILES.items():
            registry.register(name, override=True)(originals[filename])


def run_contract(module: ModuleType, name: str, **choices: list) -> list[str]:
    """Run every test of ``module`` that takes a component ``name``, over all ``choices``."""
    ran = []
    for test_name, test in vars(module).items():
        if not (test_name.startswith("test_") and callable(test)):
            continue
        axes = [p for p in inspect.signature(test).parameters if p != "name"]
        if len(axes) == len(inspect.signature(test).parameters):
            continue  # a test of one particular component, not of every registered one
        for values in itertools.product(*(choices[a] for a in axes)):
            test(name=name, **dict(zip(axes, values)))
        ran.append(test_name)
    return ran


def test_user_fusion_passes_the_fusion_contract(user):
    # The registry-wide tests collect it themselves (test_all_fusions imports the file) ...
    assert ("user_max", 2) in fusion_contract.CASES
    # ... and they run here too, so this file alone proves it.
    ran = run_contract(fusion_contract, "user_max", n=[2, 3])
    assert len(ran) >= 6, ran


def test_user_attack_passes_the_attack_contract(user, monkeypatch):
    step = user["user_attack"].L2Step
    # test_all_attacks lists its cases by hand: add the user's attack the way a built-in is.
    case = (lambda t: step(eps=0.5, targets=t), ("l2", 0.5), lambda t: step(eps=0, targets=t))
    monkeypatch.setitem(attack_contract.ATTACK_CASES, "user_l2_step", case)
    ran = run_contract(
        attack_contract, "user_l2_step", targets=attack_contract.TARGETS, mode=["train", "eval"]
    )
    assert {"test_attack_invariants", "test_zero_strength_returns_the_input"} <= set(ran)
    assert isinstance(ATTACKS.create({"name": "user_l2_step", "eps": 0.1}), step)


@pytest.mark.parametrize(
    "spec",
    [{"name": "user_histogram", "bins": 4}, {"name": "small_cnn", "width": 4, "depth": 2}],
)
def test_user_encoder_passes_the_encoder_contract(user, spec):
    # DESIGN.md: an encoder maps one modality's tensor to (B, D) and exposes out_dim.
    enc = ENCODERS.create(spec)
    assert isinstance(enc, nn.Module) and isinstance(enc.out_dim, int)
    x = torch.rand(3, 3, 16, 16, requires_grad=True)
    out = enc(x)
    assert out.shape == (3, enc.out_dim) and torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
    assert x.grad.abs().sum() > 0, "the output does not depend on the input"
    enc.eval()
    alone = torch.cat([enc(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(enc(x), alone)  # samples do not mix


def test_model_from_user_registered_names(user, tmp_path):
    model = FusionModel(
        {"fg": {"name": "user_histogram", "bins": 4}, "bg": "small_cnn"},
        "user_max",
        num_classes=3,
        fusion_dim=6,
    )
    assert isinstance(model.encoders["fg"], user["user_encoder"].HistogramEncoder)
    assert isinstance(model.fusion, user["user_fusion"].MaxFusion)
    x = {"fg": torch.rand(2, 3, 16, 16), "bg": torch.rand(2, 3, 16, 16)}
    before = model.encoders["fg"].scale.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 2])).backward()
    optimizer.step()  # one training step moves the user's encoder
    assert not torch.equal(model.encoders["fg"].scale, before)

    model.save(tmp_path / "m")
    model.eval()
    again = FusionModel.load(tmp_path / "m").eval()
    assert torch.equal(model(x), again(x))


def test_load_without_registration_names_missing_component(user, tmp_path):
    model = FusionModel({"fg": "small_cnn"}, "user_max", num_classes=2, fusion_dim=4)
    model.save(tmp_path / "m")
    factory = FUSIONS.resolve("user_max").factory
    FUSIONS.unregister("user_max")
    try:
        # The saved model names the module its fusion came from.
        named = r"unknown fusion 'user_max'.*came from \['tests.user_fusion'\]"
        with pytest.raises(KeyError, match=named):
            FusionModel.load(tmp_path / "m")
    finally:
        FUSIONS.register("user_max")(factory)
    assert "user_max" in FUSIONS and "user_histogram" in ENCODERS
