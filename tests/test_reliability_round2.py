"""No silent wrong numbers, round two: the epoch is picked on a training split, reports never
conclude over nothing and flag collapsed models, repeated strengths, two runs in one folder,
late errors caught at load, units and dtypes, and manifests that name versions and hardware.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

import modfuse.cli.commands as cli
from modfuse import FusionModel
from modfuse.attacks import FGSM, GaussianNoise
from modfuse.cli.commands import main
from modfuse.config.schema import ExperimentConfig, load_yaml_text
from modfuse.data import StackedDataset, make_synthetic_coco
from modfuse.reporting.report import accuracy_tables, write_report
from modfuse.robustness import Sweep, robustness_sweep
from modfuse.training.trainer import Trainer
from tests.cli.test_reliability import one_paragraph, small_quick, write
from tests.mlp_world import mlp_world

ROOT = Path(__file__).parents[1]


# ---------------------------------------------------------------- 1. epoch picked on train


class Watched(torch.utils.data.Dataset):
    """A dataset that records, for every item read, what the run was doing then."""

    def __init__(self, data, phase: list[str], reads: list[str]) -> None:
        self.data, self.phase, self.reads = data, phase, reads

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        self.reads.append(self.phase[0])
        return self.data[i]

    def __getattr__(self, name):  # classes, class_to_index, fingerprint...
        if name in ("data", "phase", "reads"):
            raise AttributeError(name)
        return getattr(self.data, name)


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory):
    """A small `modfuse run` whose test set records when it was read, and what fit got."""
    home = tmp_path_factory.mktemp("watched")
    phase, reads, fits = ["setup"], [], []
    real_build, real_fit = cli.build_data, Trainer.fit

    def build_data(cfg):
        train, test = real_build(cfg)
        return train, Watched(test, phase, reads)

    def fit(self, train_data, val_data=None, resume=False):
        fits.append((train_data, val_data))
        phase[0] = "training"
        try:
            return real_fit(self, train_data, val_data, resume)
        finally:
            phase[0] = "evaluation"

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        mp.setattr(cli, "build_data", build_data)
        mp.setattr(Trainer, "fit", fit)
        config = write(home / "cfg.yaml", small_quick(data={"workers": 0}))
        assert main(["run", str(config), "--out", "run", "--no-progress"]) == 0
    return home, reads, fits


def test_the_test_set_is_never_read_before_training_ends(watched_run):
    home, reads, fits = watched_run
    assert reads, "the evaluation read the test set"
    assert set(reads) == {"evaluation"}, sorted(set(reads))
    ((train_part, val_part),) = fits
    # The validation split comes from the 60 training items: 6 held out, 54 trained on.
    assert (len(train_part), len(val_part)) == (54, 6)
    assert not isinstance(val_part, Watched)
    assert set(train_part.indices).isdisjoint(val_part.indices)
    assert sorted(train_part.indices + val_part.indices) == list(range(60))


def test_history_best_val_is_not_the_test_accuracy_by_construction(watched_run):
    home, _, fits = watched_run
    history = json.loads((home / "run" / "history.json").read_text())
    ((_, val_part),) = fits
    # Validation accuracies are fractions of the 6 held-out items, not of the 30 test items.
    for record in history["history"]:
        assert math.isclose(record["val_acc"] * len(val_part), round(record["val_acc"] * 6))


def test_val_fraction_is_validated_in_configs():
    cfg = small_quick(train={"val_fraction": 0.0})
    with pytest.raises(ValidationError, match="val_fraction"):
        ExperimentConfig.model_validate(cfg)


# ---------------------------------------------------------------- 13. manifest


def test_manifest_records_versions_hardware_and_the_world_hash(watched_run):
    from modfuse.reporting.manifest import folder_digest

    home, _, _ = watched_run
    manifest = json.loads((home / "run" / "report" / "manifest.json").read_text())
    versions = manifest["versions"]
    for name in ("python", "torch", "torchvision", "timm", "numpy", "pillow", "pycocotools"):
        assert versions[name], name
    assert versions["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert manifest["hardware"]["cpu"] and manifest["hardware"]["cores"] >= 1
    assert manifest["hardware"]["gpus"] == (
        [torch.cuda.get_device_name(0)] if torch.cuda.is_available() else []
    )
    assert manifest["data"]["world"] == folder_digest(home / "data")


def test_folder_digest_sees_one_changed_byte(tmp_path):
    from modfuse.reporting.manifest import folder_digest

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"\x00\x01")
    before = folder_digest(tmp_path)
    assert folder_digest(tmp_path) == before
    (tmp_path / "a" / "x.png").write_bytes(b"\x00\x02")
    assert folder_digest(tmp_path) != before


def test_environment_names_every_package_a_number_depends_on():
    from modfuse.reporting.manifest import environment

    env = environment()
    assert set(env["versions"]) >= {"python", "torch", "torchvision", "timm", "numpy", "pillow"}
    assert {"cpu", "cores", "torch_threads", "gpus"} <= set(env["hardware"])


# ---------------------------------------------------------------- 2. honest reports


def collapsed_world(n: int = 60):
    """An MLP that answers class 0 whatever comes, and data where class 0 is 2/3 of items."""
    model = FusionModel({"fg": {"name": "mlp", "in_dim": 4}}, num_classes=3)
    model.eval()
    with torch.no_grad():
        model.head.weight.zero_() if isinstance(model.head, torch.nn.Linear) else None
        for p in model.fusion.parameters():
            p.zero_()
        bias = [p for name, p in model.named_parameters() if name.endswith("bias")][-1]
        bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    labels = torch.tensor([0, 0, 1] * (n // 3))
    return model, StackedDataset({"fg": torch.randn(n, 4)}, labels)


def noise_sweeps():
    return [Sweep("noise", GaussianNoise(targets=("fg",), seed=0), [0.1, 1.0])]


def test_a_collapsed_model_is_flagged_with_its_majority_baseline():
    model, data = collapsed_world()
    with torch.no_grad():
        assert set(model({"fg": data.tensors["fg"]}).argmax(1).tolist()) == {0}
    result = robustness_sweep({"m": model}, data, noise_sweeps(), progress=False)
    flags = {f["check"]: f for f in result.flags}
    assert "class 0 for 60 of 60 clean items (100%)" in flags["single_class_predictions"]["detail"]
    assert "majority baseline 0.667" in flags["single_class_predictions"]["detail"]
    assert "0.667 clean and at all 2 perturbed points" in flags["accuracy_unmoved"]["detail"]
    statuses = {c["check"]: c["status"] for c in result.checks}
    assert statuses["single_class_predictions"] == statuses["accuracy_unmoved"] == "flagged"
    assert result.baselines == {
        "n": 60,
        "classes": 3,
        "majority": 40 / 60,
        "majority_class": 0,
        "chance": 1 / 3,
    }


def test_a_healthy_model_passes_the_new_checks():
    model, data = mlp_world(64)
    result = robustness_sweep({"m": model}, data, noise_sweeps(), progress=False)
    statuses = {c["check"]: c["status"] for c in result.checks}
    assert statuses["single_class_predictions"] == "passed"
    assert statuses["accuracy_unmoved"] == "passed"


def test_per_class_accuracy_is_in_results_json(tmp_path):
    model, data = mlp_world(64)
    sweeps = [Sweep("noise", GaussianNoise(targets=("fg",), seed=0), [3.0])]
    result = robustness_sweep({"m": model}, data, sweeps, progress=False)
    write_report(tmp_path, result)
    saved = json.loads((tmp_path / "results.json").read_text())
    labels = data.labels
    counts = torch.bincount(labels, minlength=3).tolist()
    clean = next(r for r in saved["per_class"] if r["perturbation"] == "clean")
    assert clean["n"] == counts
    assert clean["correct"] == counts  # the model labelled these items itself
    noisy = next(r for r in saved["per_class"] if r["perturbation"] == "noise")
    assert sum(noisy["correct"]) == next(r["correct"] for r in result if r["strength"] == 3.0)
    assert sum(noisy["predicted"]) == 64
    majority = max(counts) / 64
    assert saved["baselines"] == [
        {
            "group": None,
            "n": 64,
            "classes": 3,
            "majority": majority,
            "majority_class": counts.index(max(counts)),
            "chance": 1 / 3,
        }
    ]
    report = (tmp_path / "report.md").read_text()
    assert report.count(f"| *majority class ({counts.index(max(counts))})* | {majority:.3f} |") == 1
    assert f"| *uniform chance (1/3)* | {1 / 3:.3f} | {1 / 3:.3f} |" in report


def test_every_accuracy_table_shows_the_baselines_or_says_they_are_unknown():
    rows = [
        {"model": "m", "perturbation": p, "attack": a, "targets": "fg", "strength": v,
         "correct": 5, "n": 10, "accuracy": 0.5, "world": w, "unit": "sigma"}
        for w in ("a", "b")
        for p, a, v in (("clean", "none", 0.0), ("blur", "GaussianBlur", 1.0))
    ]
    base = {"n": 10, "classes": 4, "majority": 0.6, "majority_class": 2, "chance": 0.25}
    text = accuracy_tables(rows, "world", {"a": base})
    tables = text.split("### ")[1:]
    assert len(tables) == 2
    assert "| *majority class (2)* | 0.600 | 0.600 |" in tables[0]
    assert "| *uniform chance (1/4)* | 0.250 | 0.250 |" in tables[0]
    assert "| *baselines* | not known" in tables[1]


def test_no_rows_never_read_as_a_result(tmp_path):
    said = "No rows: nothing was evaluated, so there is no accuracy to report."
    assert accuracy_tables([]) == said
    report = write_report(tmp_path, []).read_text()
    assert "nothing was evaluated" in report


def example_module(name: str):
    """A module of examples/ (they import each other by plain name)."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "examples"))


def test_an_empty_claims_table_never_concludes():
    claims = example_module("context_fusion_claims")
    empty = claims.claims_table([])
    assert "holds" not in empty.replace("hold on", "")
    assert "No claim could be judged" in empty
    one = claims.claims_table([{"claim": "c", "value": "1", "holds": True, "seeds": "3/3"}])
    assert "All 1 claims hold on the seed means." in one


def test_the_example_header_names_only_what_ran():
    example = example_module("coco_context_fusion")
    note = example.swept_note([{"perturbation": "clean"}, {"perturbation": "fg_fgsm"}])
    assert "`fg_*`" in note and "object" not in note and "image" not in note
    assert example.swept_note([{"perturbation": "clean"}]).startswith("No perturbation")


def test_a_frozen_encoder_without_weights_is_refused_in_configs_and_warned_in_python():
    spec = {"name": "small_cnn", "freeze": True}
    cfg = small_quick(model={"encoders": {"fg": spec, "bg": "small_cnn"}})
    with pytest.raises(ValidationError, match="frozen .* without weights.*random_ok: true"):
        ExperimentConfig.model_validate(cfg)
    ok = small_quick(model={"encoders": {"fg": {**spec, "random_ok": True}, "bg": "small_cnn"}})
    model = ExperimentConfig.model_validate(ok).model.build()  # random_ok is not an argument
    assert model.encoders["fg"].frozen
    with pytest.warns(UserWarning, match=r"encoders \['fg'\] are frozen but were built without"):
        Trainer(model, epochs=1)


def test_a_loaded_frozen_model_is_not_warned_about(tmp_path, recwarn):
    model = FusionModel({"fg": {"name": "small_cnn", "freeze": True}}, num_classes=2)
    model.save(tmp_path / "m")
    Trainer(FusionModel.load(tmp_path / "m"), epochs=1)
    assert not [w for w in recwarn if "frozen but were built" in str(w.message)]


# ---------------------------------------------------------------- 3. repeated strengths


def test_repeated_strengths_are_refused():
    with pytest.raises(ValueError, match=r"repeat \[0.0313725\]"):
        Sweep("x", FGSM(targets=("fg",)), [0.0313725, 0.0313725])
    cfg = small_quick()
    cfg["eval"]["sweeps"][1]["strengths"] = [0.0313725, 0.0313725]
    with pytest.raises(ValidationError, match="repeat"):
        ExperimentConfig.model_validate(cfg)


# ---------------------------------------------------------------- 7. one run per folder


class OtherProcessClaim:
    """Another live process holding ``folder``'s claim while the block runs."""

    def __init__(self, folder: Path) -> None:
        self.code = textwrap.dedent(
            f"""
            import sys, time
            from modfuse.io.folder_lock import claim_folder
            with claim_folder({str(folder)!r}, "a run folder"):
                print("held", flush=True)
                sys.stdin.read()
            """
        )

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "held"
        return self

    def __exit__(self, *exc):
        self.proc.communicate(timeout=60)


def test_a_folder_claimed_by_a_live_process_is_refused(tmp_path):
    from modfuse.io.folder_lock import FolderInUseError, claim_folder

    with OtherProcessClaim(tmp_path / "run"):
        with pytest.raises(FolderInUseError, match="in use by another process"):
            with claim_folder(tmp_path / "run", "a run folder"):
                pass
    with claim_folder(tmp_path / "run", "a run folder"):  # released on exit
        with claim_folder(tmp_path / "run", "a run folder"):  # this process holds it
            pass


def test_a_claim_of_a_killed_process_is_free(tmp_path):
    from modfuse.io.folder_lock import claim_folder

    code = textwrap.dedent(
        f"""
        import os, signal
        from modfuse.io.folder_lock import claim_folder
        with claim_folder({str(tmp_path / "run")!r}, "a run folder"):
            print("held", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "held" and done.returncode == -9
    with claim_folder(tmp_path / "run", "a run folder"):
        pass


def test_modfuse_run_into_a_folder_in_use_stops_before_writing(tmp_path, monkeypatch, capsys):

    monkeypatch.chdir(tmp_path)
    config = write(tmp_path / "cfg.yaml", small_quick())
    with OtherProcessClaim(tmp_path / "run"):
        assert main(["run", str(config), "--out", "run", "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, "in use by another process")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_world_being_written_is_waited_for_then_reused(tmp_path):
    from modfuse.io.folder_lock import claim_folder

    root = tmp_path / "world"
    code = textwrap.dedent(
        f"""
        from modfuse.data import ensure_synthetic_world
        ensure_synthetic_world({str(root)!r}, n_train=12, n_test=6, size=32)
        print("reused", flush=True)
        """
    )
    with claim_folder(root, "a synthetic world being written", wait=True):
        root.mkdir()
        (root / "half-written.png").write_bytes(b"")  # what a writer leaves midway
        other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert other.wait(timeout=8) is None, "it did not wait for the writer"
        except subprocess.TimeoutExpired:
            pass  # still waiting: what it must do
        (root / "half-written.png").unlink()
        make_synthetic_coco(root, n_train=12, n_test=6, size=32)  # the writer's own work
    out, _ = other.communicate(timeout=120)
    assert other.returncode == 0 and out.strip() == "reused"


# ---------------------------------------------------------------- 10. late errors, early


@pytest.mark.parametrize(
    "change, words",
    [
        ({"train": {"epochs": True}}, "train.epochs: expected int, got True (a boolean)"),
        ({"model": {"num_classes": True}}, "model.num_classes: expected int, got True"),
        ("loss", "argument 'loss' must be a Python function, got 'foo'"),
        ("steps", "argument 'steps' = 1000000000000 is more than 100,000"),
    ],
)
def test_specs_that_used_to_fail_after_training_fail_at_load(change, words, tmp_path, capsys):
    cfg = small_quick()
    if change == "loss":
        cfg["eval"]["sweeps"].append(
            {"name": "p", "attack": {"name": "pgd", "targets": ["fg"], "loss": "foo"},
             "strengths": [0.01]}
        )
    elif change == "steps":
        cfg["eval"]["sweeps"].append(
            {"name": "p", "attack": {"name": "pgd", "targets": ["fg"], "steps": 10**12},
             "strengths": [0.01]}
        )
    else:
        for section, values in change.items():
            cfg[section] = {**cfg[section], **values}
    config = write(tmp_path / "cfg.yaml", cfg)
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, words)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.device_count() >= 8, reason="this machine has a cuda:7")
@pytest.mark.parametrize("where", ["flag", "config"])
def test_a_device_this_machine_lacks_stops_before_anything_is_written(where, tmp_path, capsys):
    cfg = small_quick(device="cuda:7") if where == "config" else small_quick()
    config = write(tmp_path / "cfg.yaml", cfg)
    argv = ["run", str(config), "--out", str(tmp_path / "run"), "--no-progress"]
    argv += ["--device", "cuda:7"] if where == "flag" else []
    assert main(argv) == 2
    one_paragraph(capsys.readouterr().err, "device 'cuda:7' was asked for, but this machine has")
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / ".run.lock").exists()


# ---------------------------------------------------------------- 12. clear errors


def test_integer_and_double_images_into_forward_are_named():
    model = FusionModel({"fg": "small_cnn"}, num_classes=2)
    with pytest.raises(TypeError, match=r"'fg' is a torch.uint8 tensor.*x.float\(\) / 255"):
        model({"fg": torch.zeros(2, 3, 16, 16, dtype=torch.uint8)})
    with pytest.raises(TypeError, match="'fg' is a torch.float64 tensor; its encoder's weights"):
        model({"fg": torch.zeros(2, 3, 16, 16, dtype=torch.float64)})
    assert model.double()({"fg": torch.zeros(2, 3, 16, 16, dtype=torch.float64)}).shape == (2, 2)


def test_model_arguments_of_the_wrong_kind_are_named():
    with pytest.raises(TypeError, match="encoders must be a mapping .* got list"):
        FusionModel(["small_cnn"], num_classes=2)
    with pytest.raises(ValueError, match="num_classes must be a positive int, got True"):
        FusionModel({"fg": "small_cnn"}, num_classes=True)
    with pytest.raises(TypeError, match="views must be a ContextViews or a dict"):
        FusionModel({"fg": "small_cnn"}, num_classes=2, views=24)
    model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, num_classes=2, views={"size": 24})
    assert model.views.size == 24
    cfg = small_quick(model={"encoders": ["small_cnn"]})
    with pytest.raises(ValidationError, match="valid dictionary"):
        ExperimentConfig.model_validate(cfg)


def test_an_empty_dataset_is_refused_by_the_sweep():
    model, _ = mlp_world(8)
    empty = StackedDataset({"fg": torch.zeros(0, 8)}, torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty dataset"):
        robustness_sweep({"m": model}, empty, noise_sweeps(), progress=False)


def test_write_report_arguments_in_the_wrong_order_are_named(tmp_path):
    model, data = mlp_world(8)
    rows = robustness_sweep({"m": model}, data, [], progress=False)
    with pytest.raises(TypeError, match="out_dir must be a folder path .* wrong order"):
        write_report(rows, tmp_path)


def test_config_yaml_round_trips_random_ok(tmp_path):
    text = yaml.safe_dump(
        small_quick(model={"encoders": {"fg": {"name": "small_cnn", "freeze": True,
                                                "random_ok": True}, "bg": "small_cnn"}})
    )
    cfg = ExperimentConfig.model_validate(load_yaml_text(text))
    assert cfg.model.encoders["fg"].model_extra["random_ok"] is True
    from modfuse.cli.evaluate import run_histories

    assert run_histories(tmp_path, "x") is None  # no history.json: no curves


def test_a_data_root_inside_the_run_folder_is_an_error_not_a_hang(tmp_path, monkeypatch, capsys):
    """A data root inside the run folder once waited forever on the run folder's own claim:
    it is refused by name now (and the claim is re-entrant within a process anyway)."""
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path / "cfg.yaml", small_quick(data={"root": "r_dl"}))
    assert main(["run", str(config), "--out", "r_dl", "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, "data.root 'r_dl' is inside the run folder")


def test_a_symlink_to_a_claimed_folder_is_the_same_claim(tmp_path):
    from modfuse.io.folder_lock import FolderInUseError, claim_folder

    (tmp_path / "run").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "run")
    code = textwrap.dedent(
        f"""
        from modfuse.io.folder_lock import claim_folder
        with claim_folder({str(tmp_path / "link")!r}, "a run folder"):
            pass
        """
    )
    with claim_folder(tmp_path / "run", "a run folder"):
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert other.returncode != 0 and FolderInUseError.__name__ in other.stderr


def test_random_ok_must_be_a_boolean():
    spec = {"name": "small_cnn", "freeze": True, "random_ok": "no"}
    with pytest.raises(ValidationError, match="random_ok: expected true or false, got 'no'"):
        ExperimentConfig.model_validate(small_quick(model={"encoders": {"fg": spec}}))


def test_a_training_set_too_small_to_split_is_refused_before_the_folder_is_written(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path / "cfg.yaml", small_quick(data={"n_train": 1, "root": "d1"}))
    assert main(["run", str(config), "--out", "run", "--no-progress"]) == 2
    one_paragraph(capsys.readouterr().err, "needs at least 2 training items")
    assert not (tmp_path / "run" / "config.yaml").exists()
