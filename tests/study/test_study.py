"""`modfuse study` end to end on the tests' own three-modality world: the tables and verdicts
against numbers computed here, byte-identical reruns, and kills resumed to the same bytes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from modfuse import FusionModel
from modfuse.attacks import GaussianNoise
from modfuse.cli import main
from tests.study.world import make_data

ROOT = Path(__file__).parents[2]
STUDY = Path(__file__).parent / "study.yaml"
RESULTS = ("results.csv", "results.json")


def run_study(out: Path, *extra: str) -> int:
    return main(["study", str(STUDY), "--out", str(out), "--no-progress", *extra])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study") / "ref"
    assert run_study(out) == 0
    return out


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def accuracy(model: FusionModel, inputs: dict, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return int((model(inputs).argmax(1) == labels).sum()) / len(labels)


def test_the_tables_and_verdicts_match_numbers_computed_here(reference):
    found = results(reference)
    _, test = make_data(240, 120, seed=0)  # the study does not vary the data
    x = {m: test.tensors[m] for m in "abc"}
    y = test.labels
    clean: dict[str, list[float]] = {}
    noisy_a: dict[str, list[float]] = {}
    for name, mods in {"joint": "abc", "a_only": "a", "bc": "bc"}.items():
        for seed in (0, 1):
            model = FusionModel.load(reference / "units" / name / f"seed{seed}" / "train" / "model")
            model.eval()
            inputs = {m: x[m] for m in mods}
            clean.setdefault(name, []).append(accuracy(model, inputs, y))
            if "a" in mods:  # each item's own draws: the same noise on the whole set at once
                attacked = GaussianNoise(std=3.0, targets=("a",), seed=seed)(model, inputs, y)
                noisy_a.setdefault(name, []).append(accuracy(model, attacked, y))
    mean = {k: sum(v) / len(v) for k, v in clean.items()}
    means = {(r["model"], r["attack_name"], r["threat"], r["strength"]): r for r in found["means"]}
    for name, value in mean.items():
        assert means[(name, "clean", "", 0.0)]["accuracy"] == pytest.approx(value, abs=1e-12)
    noise_mean = sum(noisy_a["joint"]) / 2
    assert means[("joint", "noise", "a", 3.0)]["accuracy"] == pytest.approx(noise_mean, abs=1e-12)

    verdicts = {h["name"]: h for h in found["hypotheses"]}
    h = verdicts["fused_clean"]  # margin 0
    assert h["gain"] == pytest.approx(mean["joint"] - mean["a_only"], abs=1e-12)
    assert h["verdict"] == ("holds" if mean["joint"] - mean["a_only"] >= 0 else "does not hold")
    assert h["seeds_agreeing"] == sum(j >= a for j, a in zip(clean["joint"], clean["a_only"]))
    h = verdicts["fused_noise_on_a"]
    gain = noise_mean - sum(noisy_a["a_only"]) / 2
    assert h["gain"] == pytest.approx(gain, abs=1e-12)
    assert h["verdict"] == ("holds" if gain >= 0.05 else "does not hold")
    h = verdicts["bc_beats_joint"]
    assert h["verdict"] == ("holds" if mean["bc"] - mean["joint"] >= 0.1 else "does not hold")
    report = (reference / "report.md").read_text()
    for h in found["hypotheses"]:
        assert f"| {h['claim']} | **{h['verdict']}** |" in report
        if h["verdict"] == "does not hold":
            assert f"*{h['claim']}: this does not hold.*" in report


def test_the_single_source_table_is_the_minimum_over_the_modalities_a_model_reads(reference):
    found = results(reference)
    means = {(r["model"], r["attack_name"], r["threat"], r["strength"]): r["accuracy"]
             for r in found["means"]}
    reads = {"joint": "abc", "a_only": "a", "bc": "bc"}
    table = found["single_source"]
    assert len(table) == 3 * 3  # (noise: 2 strengths + fgsm: 1) x 3 models
    for row in table:
        cells = row["by_modality"]
        for m in "abc":
            key = (row["model"], row["attack"], m, row["strength"])
            assert cells[m] == (means[key] if m in reads[row["model"]] else None)
        assert row["single_source"] == min(cells[m] for m in reads[row["model"]])
    assert "## Single-source robustness" in (reference / "report.md").read_text()


def test_rows_cover_every_model_seed_threat_attack_and_strength(reference):
    rows = results(reference)["rows"]
    threats = {"joint": {"a", "b", "c", "all"}, "a_only": {"a", "all"}, "bc": {"b", "c", "all"}}
    for name, expected in threats.items():
        for seed in (0, 1):
            mine = [r for r in rows if r["model"] == name and r["seed"] == seed]
            got = {(r["threat"], r["attack_name"], r["strength"]) for r in mine}
            want = {("", "clean", 0.0)}
            want |= {(t, "noise", s) for t in expected for s in (1.0, 3.0)}
            want |= {(t, "fgsm", 0.5) for t in expected}
            assert got == want, (name, seed)
            # fgsm is swept on the first 60 items (items: 60), the rest on all 120
            assert all(r["n"] == (60 if r["attack_name"] == "fgsm" else 120) for r in mine)
    csv = (reference / "results.csv").read_text().splitlines()
    assert len(csv) == 1 + len(rows) + len(results(reference)["means"])


def test_a_second_run_gives_byte_identical_results(reference, tmp_path):
    assert run_study(tmp_path / "again") == 0
    for name in RESULTS:
        assert (tmp_path / "again" / name).read_bytes() == (reference / name).read_bytes(), name


def _start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.study.slow_run", "study", str(STUDY), "--out", str(out),
         "--no-progress", *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.005)
    assert proc.poll() is None, "the study ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_at_three_points_and_resumed_gives_the_same_bytes(reference, tmp_path):
    out = tmp_path / "killed"
    units = out / "units"
    first = units / "joint" / "seed0" / "train" / "run" / "checkpoints"
    points = [
        # 1: inside the first training unit, after its first epoch's checkpoint
        lambda: (first / "latest.json").is_file(),
        # 2: inside an evaluation, once the sweep has saved its counts
        lambda: any(units.rglob("sweep-*.resume.json")) or (
            units / "bc" / "seed0" / "evaluate" / "done.json").is_file(),
        # 3: between units of the second seed
        lambda: (units / "a_only" / "seed1" / "train" / "done.json").is_file(),
    ]
    for i, point in enumerate(points):
        _kill_when(_start(out, *(["--resume"] if i else [])), point)
    assert not (out / "results.csv").exists()
    done = _start(out, "--resume")
    assert done.wait(timeout=300) == 0
    for name in RESULTS:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_a_changed_study_refuses_resume_unless_forced_then_redoes_only_what_changed(
    reference, tmp_path
):
    out = tmp_path / "changed"
    shutil.copytree(reference, out)
    changed = tmp_path / "changed.yaml"
    changed.write_text(STUDY.read_text().replace("strengths: [0.5]", "strengths: [0.5, 1.0]"))
    args = ["study", str(changed), "--out", str(out), "--no-progress"]
    assert main(args) == 2  # holds a study already: --resume needed
    assert main([*args, "--resume"]) == 2  # and it is another version of it
    trained = out / "units" / "joint" / "seed0" / "train" / "done.json"
    evaluated = out / "units" / "joint" / "seed0" / "evaluate" / "done.json"
    before = trained.read_text(), evaluated.read_text()
    assert main([*args, "--resume", "--force"]) == 0
    assert trained.read_text() == before[0]  # training settings unchanged: kept
    assert evaluated.read_text() != before[1]  # evaluation changed: redone
    rows = results(out)["rows"]
    assert {r["strength"] for r in rows if r["attack_name"] == "fgsm"} == {0.5, 1.0}


def test_a_new_folder_holding_other_files_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    assert run_study(tmp_path / "x") == 2
    assert (tmp_path / "x" / "notes.txt").read_text() == "mine"


def test_the_example_study_runs_quick(tmp_path):
    example = ROOT / "examples" / "studies" / "three_modalities.yaml"
    out = tmp_path / "example"
    assert main(["study", str(example), "--out", str(out), "--quick", "--no-progress"]) == 0
    found = results(out)
    assert {r["seed"] for r in found["rows"]} == {0}  # --quick: its quick section's seeds
    assert {r["model"] for r in found["rows"]} == {"fused", "a_only", "b_only", "fused_dropout"}
    assert [h["verdict"] in ("holds", "does not hold") for h in found["hypotheses"]] == [True] * 3
    assert (out / "accuracy_pgd.png").is_file() and (out / "training_curves.png").is_file()


def test_the_image_audio_text_study_needs_no_runner_code(tmp_path, monkeypatch):
    # examples/studies/custom_modality.yaml: the user's module gives the encoder, the fusion and
    # the data; the study is config only. Smaller here than its own --quick, same settings.
    import yaml

    from modfuse.study import Study

    monkeypatch.chdir(ROOT)  # `imports: [examples.custom_modality]` is read from the repository
    data = yaml.safe_load((ROOT / "examples" / "studies" / "custom_modality.yaml").read_text())
    data["seeds"], data["train"]["epochs"] = [0], 1
    data["data"]["kwargs"] = {"n_train": 240, "n_test": 80}
    found = Study(data).run(tmp_path / "custom", progress=False)
    threats = {(r["model"], r["threat"], r["attack_name"]) for r in found["rows"]}
    assert ("three_modalities", "image", "fgsm") in threats
    assert ("audio_text", "image", "fgsm") not in threats  # it does not read the image
    assert ("audio_text", "text", "substitution") in threats
    assert {h["name"] for h in found["hypotheses"]} == {
        "the_image_adds_something", "three_modalities_survive_a_lost_audio"}
    config = json.loads(
        (tmp_path / "custom/units/three_modalities/seed0/train/model/config.json").read_text())
    assert config["modules"] == ["examples.custom_modality"]
