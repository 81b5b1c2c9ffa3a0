import json
import pickle

import pytest
import torch

from modfuse import ContextViews, FusionModel
from modfuse._registry import FUSIONS
from modfuse.io import load_tensors


@pytest.mark.parametrize("fusion", FUSIONS.names("[!u]*"))  # built-ins, not test-registered ones
def test_save_load_round_trip_is_bit_identical(fusion, tmp_path):
    model = FusionModel(
        {"fg": {"name": "small_cnn", "width": 4, "depth": 2}, "bg": {"name": "mlp", "in_dim": 5}},
        fusion,
        num_classes=4,
        missing="learned",
        unimodal_heads=True,
    )
    # Train one step so that BatchNorm statistics and weights differ from a fresh build.
    x = {"fg": torch.rand(3, 3, 16, 16), "bg": torch.rand(3, 5)}
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 3])).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad if p.grad is not None else 0
    model.save(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    loaded = FusionModel.load(tmp_path / "run")
    model.eval(), loaded.eval()
    assert torch.equal(model(x), loaded(x))
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_views_and_encoder_weight_files_survive(tmp_path):
    import torchvision

    weights = tmp_path / "imagenet_resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    model = FusionModel(
        {"fg": {"name": "timm:resnet18", "weights": str(weights), "freeze": True}},
        num_classes=2,
        views=ContextViews(size=8, fg_mode="box"),
    ).eval()
    model.save(tmp_path / "run")
    weights.unlink()  # the saved model must not need the original weights file
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["views"] == {
        "size": 8,
        "fg_mode": "box",
        "fill": "mean",
        "margin": 0.1,
        "hide": "box",
    }
    assert config["model"]["encoders"]["fg"]["weights"] is None
    loaded = FusionModel.load(tmp_path / "run").eval()
    assert loaded.views.fg_mode == "box" and loaded.encoders["fg"].frozen
    x = {"fg": torch.rand(1, 3, 8, 8)}
    assert torch.equal(model(x), loaded(x))


def test_model_passed_as_modules_cannot_be_saved(tmp_path):
    from modfuse.encoders import SmallCNN

    model = FusionModel({"fg": SmallCNN()}, num_classes=2)
    with pytest.raises(ValueError, match="encoder 'fg' was passed as a module"):
        model.save(tmp_path / "m")


class Exploit:
    def __reduce__(self):
        return (exec, ("open('/tmp/modfuse_pwned', 'w').write('x')",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    with open(path, "wb") as f:
        pickle.dump({"weight": Exploit()}, f)
    with pytest.raises(ValueError, match="refusing to load"):
        load_tensors(path)
    import os

    assert not os.path.exists("/tmp/modfuse_pwned")


def test_saved_model_with_a_pickled_weights_file_is_refused(tmp_path):
    model = FusionModel({"fg": "small_cnn"}, num_classes=2)
    model.save(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(pickle.dumps({"w": Exploit()}))
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        FusionModel.load(tmp_path / "m")


def test_missing_directory_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="is .* a saved FusionModel"):
        FusionModel.load(tmp_path / "nothing")


def test_atomic_write_leaves_no_temp_files(tmp_path):
    from modfuse.io import atomic_write_json

    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}


def test_a_file_that_is_no_checkpoint_is_named_as_such(tmp_path):
    from modfuse.io import load_tensors

    path = tmp_path / "photo.pth"
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")  # a JPEG renamed
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint: .* starts with"):
        load_tensors(path)


def test_the_io_package_names_its_modules_objects_and_a_model_round_trips(tmp_path):
    from modfuse import io
    from modfuse.io import file_writes, folder_lock, legacy_weights, tensor_files
    from modfuse.model import MODEL_FORMAT, files

    assert io.load_tensors is tensor_files.load_tensors
    assert io.save_tensors is tensor_files.save_tensors and io.read_json is tensor_files.read_json
    assert io.atomic_write_bytes is tensor_files.atomic_write_bytes
    assert tensor_files.atomic_write_bytes is file_writes.atomic_write_bytes
    assert io.check_state_fits is tensor_files.check_state_fits
    assert io.saved_shapes is tensor_files.saved_shapes
    assert io.extract_state_dict is legacy_weights.extract_state_dict
    assert io.claim_folder is folder_lock.claim_folder
    assert MODEL_FORMAT == files.MODEL_FORMAT == "modfuse.FusionModel"
    for gone in ("save_model", "load_model", "TrainState", "MODEL_FORMAT"):
        assert not hasattr(io, gone), gone  # a model's files are FusionModel.save / load
    model = FusionModel({"fg": {"name": "mlp", "in_dim": 3}}, num_classes=2, unimodal_heads=True)
    model.save(tmp_path / "m")
    loaded = FusionModel.load(tmp_path / "m")
    assert isinstance(loaded, FusionModel)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def _source(module: str):
    """The file of a modfuse module, or None when ``module`` names no module (a function...)."""
    from pathlib import Path

    import modfuse

    base = Path(modfuse.__file__).parent.joinpath(*module.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(module: str) -> set[str]:
    """Every modfuse module ``module`` imports, at any level (functions and TYPE_CHECKING too).

    ``from modfuse import x`` counts as an import of ``modfuse.x`` when that is a module; the
    bare package ``modfuse`` (whose ``__init__`` runs before any submodule) is left out.
    """
    import ast

    path = _source(module)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith("modfuse.") and _source(n) is not None}
    return found


def _closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for dep in _imports(todo.pop()) - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


@pytest.mark.parametrize(
    "module",
    [
        "modfuse.io",
        "modfuse.io.tensor_files",
        "modfuse.io.file_writes",
        "modfuse.io.legacy_weights",
        "modfuse.model.files",
        "modfuse.training.state",
        "modfuse.training.trainer",
        "modfuse.training.loss",
        "modfuse.training.setup",
        "modfuse.distributed",
        "modfuse.regularizers.base",
        "modfuse.regularizers.consistency",
        "modfuse.regularizers.modality_dropout",
        "modfuse.regularizers.modality_penalty",
    ],
)
def test_no_import_cycle_through_persistence_training_or_distributed(module):
    import subprocess
    import sys

    cycles = sorted(dep for dep in _imports(module) if module in _closure(dep))
    assert not cycles, f"{module} imports {cycles}, which import {module} back"
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_the_file_layer_knows_no_model():
    # The model saves through model.files; model.files and the io layer never reach the model.
    assert "modfuse.model.files" in _imports("modfuse.model.fusion_model")
    layer = ("io", "io.tensor_files", "io.file_writes", "io.legacy_weights", "model.files")
    for module in (f"modfuse.{m}" for m in layer):
        reached = _closure(module)
        assert "modfuse.model.fusion_model" not in reached, module
        assert not any(m.startswith(("modfuse.training", "modfuse.model.")) for m in reached
                       if m != "modfuse.model.files"), (module, reached)
