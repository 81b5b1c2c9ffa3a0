import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from modfuse.cli.commands import main

ROOT = Path(__file__).parents[2]


def tiny_config(tmp_path: Path, **change) -> Path:
    os.chdir(tmp_path)  # the synthetic world is written under the working folder
    cfg = yaml.safe_load((ROOT / "examples" / "configs" / "quick_synthetic.yaml").read_text())
    cfg["data"].update(root="data", n_train=60, n_test=30)
    cfg["train"]["epochs"] = 1
    for key, value in change.items():
        cfg[key] = value
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_then_eval_then_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main(["run", str(tiny_config(tmp_path)), "--out", str(out), "--no-progress"]) == 0
    for name in [
        "config.yaml",
        "model/config.json",
        "model/model.safetensors",
        "report/report.md",
        "report/results.csv",
        "report/accuracy_fg_blur.png",
    ]:
        assert (out / name).is_file(), name
    rows = json.loads((out / "report" / "results.json").read_text())["rows"]
    assert {r["perturbation"] for r in rows} == {"clean", "fg_blur", "fg_fgsm", "image_fgsm"}
    first = (out / "report" / "results.csv").read_text()
    assert main(["eval", str(out)]) == 0
    assert (out / "report" / "results.csv").read_text() == first  # same model, same numbers
    assert main(["report", str(out)]) == 0
    assert "fg_blur" in capsys.readouterr().out


def test_list_shows_registered_components(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "timm:<model>" in out and "concat" in out and "fgsm" in out and "modality_penalty" in out


def test_invalid_config_prints_a_short_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tiny_config(
        tmp_path, model={"encoders": {"fg": "small_cnn"}, "fusion": "nope", "num_classes": 6}
    )
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "invalid config" in err and "fusion" in err and "unknown fusion 'nope'" in err
    assert "Traceback" not in err
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    assert main(["run", str(path)]) == 2
    assert "malformed YAML" in capsys.readouterr().err


def test_module_entry_point_help():
    done = subprocess.run(
        [sys.executable, "-m", "modfuse", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0
    for word in ("run", "eval", "report", "list"):
        assert word in done.stdout
