"""The user's modules: `imports:` in every config, `--import` on every command, and saved
models that name the modules their components came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=ENV)


def modfuse(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modfuse", *args], capture_output=True,
                          text=True, cwd=ROOT, env=ENV)


def test_list_shows_a_users_encoder_only_with_its_import():
    without = modfuse("list")
    assert without.returncode == 0 and "study_bag" not in without.stdout
    found = modfuse("list", "--import", "tests.study.world")
    assert found.returncode == 0, found.stderr
    encoders = next(line for line in found.stdout.splitlines() if line.startswith("encoders"))
    assert "study_bag" in encoders


def test_an_import_that_fails_is_one_line_naming_the_module():
    done = modfuse("list", "--import", "no_such_package.components")
    assert done.returncode == 2
    assert "cannot import 'no_such_package.components'" in done.stderr
    assert "Traceback" not in done.stderr


def experiment(imports: list[str]) -> str:
    return json.dumps({
        "imports": imports,
        "model": {"encoders": {"a": {"name": "study_bag", "in_dim": 6}}, "num_classes": 3},
    })


def test_an_experiment_config_imports_its_modules_before_checking_names(tmp_path):
    code = (
        "from modfuse.config import ExperimentConfig, load_yaml_text\n"
        "import sys\n"
        "cfg = ExperimentConfig.model_validate(load_yaml_text(sys.argv[1]))\n"
        "print(cfg.model.build().encoders['a'].__class__.__name__)\n"
    )
    ok = subprocess.run([sys.executable, "-c", code, experiment(["tests.study.world"])],
                        capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "BagEncoder"
    refused = subprocess.run([sys.executable, "-c", code, experiment([])], capture_output=True,
                             text=True, cwd=ROOT, env=ENV)
    assert refused.returncode != 0 and "unknown encoder 'study_bag'" in refused.stderr


def test_a_saved_model_names_the_modules_its_components_came_from(tmp_path):
    save = (
        "import tests.study.world\n"
        "from modfuse import FusionModel\n"
        f"FusionModel({{'a': {{'name': 'study_bag'}}, 'b': {{'name': 'mlp', 'in_dim': 3}}}},"
        f" num_classes=2).save({str(tmp_path / 'm')!r})\n"
    )
    assert python(save).returncode == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["modules"] == ["tests.study.world"]  # mlp is modfuse's own: not listed
    load = f"from modfuse import FusionModel\nFusionModel.load({str(tmp_path / 'm')!r})\n"
    missing = python(load)
    assert missing.returncode != 0
    assert "unknown encoder 'study_bag'" in missing.stderr
    assert "--import tests.study.world" in missing.stderr
    assert python("import tests.study.world\n" + load).returncode == 0


def test_a_model_of_builtin_components_records_no_modules(tmp_path):
    from modfuse import FusionModel

    FusionModel({"a": {"name": "mlp", "in_dim": 3}}, num_classes=2).save(tmp_path / "m")
    assert "modules" not in json.loads((tmp_path / "m" / "config.json").read_text())
