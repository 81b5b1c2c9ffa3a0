"""`modfuse run` / `eval` are reproducible, never overwrite a run silently, and answer a bad
input with exit code 2 and one paragraph, never a traceback."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from modfuse.cli.commands import main

ROOT = Path(__file__).parents[2]
QUICK = ROOT / "examples" / "configs" / "quick_synthetic.yaml"


def small_quick(**change) -> dict:
    """quick_synthetic.yaml made as cheap as it goes: 60 + 30 items, one epoch."""
    cfg = yaml.safe_load(QUICK.read_text())
    cfg["data"].update(root="data", n_train=60, n_test=30)
    cfg["train"]["epochs"] = 1
    for section, values in change.items():
        if isinstance(values, dict):
            cfg[section] = {**cfg.get(section, {}), **values}
        else:
            cfg[section] = values
    return cfg


def write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def one_paragraph(err: str, *words: str) -> None:
    """The command's message: one paragraph from `modfuse:` on, no traceback, the words."""
    assert "Traceback" not in err, err
    assert "modfuse: " in err, err
    message = err[err.index("modfuse: ") :].strip()
    assert "\n\n" not in message, message
    for word in words:
        assert word in message, (word, message)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A folder holding the synthetic world (data/) and a finished small run (run/)."""
    home = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        config = write(home / "cfg.yaml", small_quick())
        assert main(["run", str(config), "--out", "run", "--no-progress"]) == 0
    return home


@pytest.fixture
def home(finished, tmp_path, monkeypatch):
    """A private copy of the finished run and its data, as the working folder."""
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def files_of(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- reproducible runs


def test_same_config_twice_gives_byte_identical_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path / "quick.yaml", small_quick())
    outputs = []
    for i, out in enumerate(("run1", "run2")):  # the first writes the world, the second reads it
        torch.manual_seed(
            1000 + i
        )  # whatever the process drew before, only the config's seed counts
        assert main(["run", str(config), "--out", out, "--no-progress"]) == 0
        csv = (tmp_path / out / "report" / "results.csv").read_bytes()
        outputs.append((csv, load_file(tmp_path / out / "model" / "model.safetensors")))
    (csv_1, weights_1), (csv_2, weights_2) = outputs
    assert csv_1 == csv_2
    assert weights_1.keys() == weights_2.keys()
    assert all(torch.equal(weights_1[k], weights_2[k]) for k in weights_1)
    # --no-progress silences every bar, the robustness sweep's included.
    assert "robustness sweep" not in capsys.readouterr().err


def test_eval_no_progress_silences_the_sweep_and_gives_the_same_numbers(home, capsys):
    before = (home / "run" / "report" / "results.csv").read_bytes()
    assert main(["eval", "run", "--no-progress"]) == 0
    assert "robustness sweep" not in capsys.readouterr().err
    assert (home / "run" / "report" / "results.csv").read_bytes() == before


def test_eval_out_writes_a_new_report_and_keeps_the_runs_own(home, capsys):
    own = files_of(home / "run" / "report")
    (home / "run" / "report" / "results.csv").write_text("the run's own report\n")
    own["results.csv"] = (home / "run" / "report" / "results.csv").read_bytes()
    assert main(["eval", "run", "--out", "again", "--no-progress"]) == 0
    assert files_of(home / "run" / "report") == own  # untouched
    new = (home / "again" / "results.csv").read_text()
    assert new.startswith("model,") or "accuracy" in new.splitlines()[0]
    # A folder that already holds something is refused, naming it.
    assert main(["eval", "run", "--out", "again", "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, "again is not empty")


# ---------------------------------------------------------------- resume means resume


def test_run_into_a_folder_holding_a_run_refuses_and_overwrites_nothing(home, capsys):
    before = files_of(home / "run")
    assert main(["run", "cfg.yaml", "--out", "run", "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, "already holds a run", "--resume", "--out")
    assert files_of(home / "run") == before


def test_resume_with_a_changed_config_prints_the_difference_and_stops(home, capsys):
    before = files_of(home / "run")
    changed = small_quick(train={"lr": 0.01, "epochs": 1}, seed=3)
    changed["data"]["n_train"] = 90
    config = write(home / "changed.yaml", changed)
    assert main(["run", str(config), "--out", "run", "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    one_paragraph(err, "train.lr: 0.003 -> 0.01", "seed: 0 -> 3", "data.n_train: 60 -> 90")
    assert "--force" in err and "--out" in err
    assert files_of(home / "run") == before


def test_resume_with_more_epochs_or_other_sweeps_is_allowed(home):
    more = small_quick(train={"epochs": 2})
    more["eval"]["sweeps"] = more["eval"]["sweeps"][:1]
    config = write(home / "more.yaml", more)
    assert main(["run", str(config), "--out", "run", "--resume", "--no-progress"]) == 0
    history = json.loads((home / "run" / "history.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1]  # epoch 0 was not trained again


def test_resume_force_goes_on_and_keeps_the_old_config(home, capsys):
    config = write(home / "lr.yaml", small_quick(train={"lr": 0.01}))
    assert main(["run", str(config), "--out", "run", "--resume", "--force", "--no-progress"]) == 0
    assert "train.lr: 0.003 -> 0.01" in capsys.readouterr().out
    assert yaml.safe_load((home / "run" / "config.yaml").read_text())["train"]["lr"] == 0.01
    old = yaml.safe_load((home / "run" / "config.before-resume.yaml").read_text())
    assert old["train"]["lr"] == 0.003


def test_force_without_resume_is_refused(home, capsys):
    assert main(["run", "cfg.yaml", "--out", "other", "--force"]) == 2
    one_paragraph(capsys.readouterr().err, "--force", "--resume")
    assert not (home / "other").exists()


# ---------------------------------------------------------------- exit 2, one paragraph


def test_resume_after_an_architecture_change_is_one_paragraph(home, capsys):
    before = files_of(home / "run")
    wider = small_quick()
    wider["model"]["encoders"]["fg"]["width"] = 8
    config = write(home / "wider.yaml", wider)
    assert main(["run", str(config), "--out", "run", "--resume", "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, "model.encoders.fg.width: 16 -> 8", "--force")
    args = ["run", str(config), "--out", "run", "--resume", "--force", "--no-progress"]
    assert main(args) == 2
    one_paragraph(
        capsys.readouterr().err, "cannot resume run", "another architecture", "in the file"
    )
    assert files_of(home / "run") == before


def test_wrong_shape_tensor_in_model_safetensors_is_one_paragraph(home, capsys):
    weights = home / "run" / "model" / "model.safetensors"
    state = load_file(weights)
    state["fusion.bias"] = torch.zeros(5)
    save_file(state, weights)
    assert main(["eval", "run", "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, "model.safetensors", "'fusion.bias'", "(5,)", "(6,)")


def test_non_checkpoint_file_as_pth_weights_is_one_paragraph(home, capsys):
    (home / "notes.pth").write_text("these are not weights\n")
    cfg = small_quick()
    cfg["model"]["encoders"]["fg"]["weights"] = "notes.pth"
    config = write(home / "notes.yaml", cfg)
    assert main(["run", str(config), "--out", "new", "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, "notes.pth")


@pytest.mark.parametrize("width", ["16", 2.5])
def test_encoder_argument_of_the_wrong_type_is_one_paragraph(home, capsys, width):
    cfg = small_quick()
    cfg["model"]["encoders"]["fg"]["width"] = width
    config = write(home / "typed.yaml", cfg)
    assert main(["run", str(config), "--out", "new", "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, "invalid config", "encoders.fg", "'width' must be int")
    assert not (home / "new").exists()  # refused before anything was written or trained


@pytest.mark.parametrize(
    "segmentation",
    [
        [[1.0, 2.0]],  # pycocotools: "input type is not supported"
        "abc",  # TypeError
        {"counts": [1, 2, 3], "size": [32, 32]},  # decodes memory it does not own
        {"counts": "abc", "size": [8, 8]},  # another size than its image
    ],
)
def test_bad_segmentations_never_give_a_traceback(home, capsys, segmentation):
    # The data layer skips an annotation it cannot decode, with a warning naming the file;
    # when nothing is left, the command stops with one paragraph.
    config = yaml.safe_load((home / "run" / "config.yaml").read_text())
    config["eval"]["sweeps"] = config["eval"]["sweeps"][:1]  # keep the evaluation cheap
    (home / "run" / "config.yaml").write_text(yaml.safe_dump(config))
    path = home / "data" / "annotations" / "instances_val2017.json"
    coco = json.loads(path.read_text())
    coco["annotations"][0]["segmentation"] = segmentation
    path.write_text(json.dumps(coco))
    with pytest.warns(UserWarning, match="instances_val2017.json"):
        assert main(["eval", "run", "--no-progress"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    for ann in coco["annotations"]:
        ann["segmentation"] = segmentation
    path.write_text(json.dumps(coco))
    assert main(["eval", "run", "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, "instances_val2017.json", "no objects left")


def test_infinite_strength_is_refused_before_training(home, capsys):
    cfg = small_quick()
    cfg["eval"]["sweeps"][0]["strengths"] = [float("inf")]
    config = write(home / "inf.yaml", cfg)
    assert "!!float" not in config.read_text() and ".inf" in config.read_text()
    assert main(["run", str(config), "--out", "new", "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, "eval.sweeps.0.strengths.0", "finite")
    assert not (home / "new").exists()


def test_a_world_written_with_other_settings_is_never_reused(home, capsys):
    # data/ holds the 60 + 30 world; a config asking for 80 training images stops, naming it.
    config = write(home / "more.yaml", small_quick(data={"n_train": 80}))
    assert main(["run", str(config), "--out", "other", "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, "n_train: folder has 60, config asks 80")
    assert not (home / "other" / "model").exists()
