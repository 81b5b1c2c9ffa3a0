import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from modfuse import FusionModel
from modfuse.attacks import FGSM
from modfuse.data import FeatureDataset, StackedDataset
from modfuse.regularizers import ModalityWeightPenalty
from modfuse.training.trainer import Trainer
from tests import train_job

ROOT = Path(__file__).parents[2]


def test_kill_and_resume_ends_with_the_same_weights(tmp_path):
    reference = train_job.run(str(tmp_path / "uninterrupted"), resume=False)
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.train_job", str(run_dir), "--sleep", "0.02"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    latest = run_dir / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and json.loads(latest.read_text())["epoch"] >= 1:
            break
        time.sleep(0.02)
    time.sleep(random.uniform(0.02, 0.15))  # somewhere inside the next epoch
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(latest.read_text())["epoch"]
    assert killed_at < 3, "the kill came after the last epoch"
    resumed = train_job.run(str(run_dir), resume=True)
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    history = json.loads((run_dir / "history.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]


def test_checkpoints_are_safetensors_and_json_only(tmp_path):
    train_job.run(str(tmp_path), epochs=2, resume=False)
    files = {p.name for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()}
    assert files == {
        "latest.json",
        "model.safetensors",
        "optimizer.safetensors",
        "rng.safetensors",
        "state.json",
    }
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()] == ["epoch-0001"]


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    a = train_job.run(str(tmp_path / "a"), epochs=2, resume=True)
    b = train_job.run(str(tmp_path / "b"), epochs=2, resume=False)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def feature_data(n: int = 256) -> FeatureDataset:
    g = torch.Generator().manual_seed(1)
    fg = torch.randn(n, 8, generator=g)
    bg = torch.randn(n, 8, generator=g)
    y = (fg[:, 0] + 0.5 * bg[:, 0] > 0).long()
    return FeatureDataset({"fg": fg, "bg": bg}, y)


def head_model() -> FusionModel:
    torch.manual_seed(0)
    mlp = {"name": "mlp", "in_dim": 2, "hidden": [8]}
    return FusionModel({"fg": mlp, "bg": mlp}, num_classes=2)


def test_head_trains_on_features_without_encoders():
    model = head_model()
    calls = []
    for enc in model.encoders.values():
        enc.register_forward_hook(lambda *a: calls.append(1))
    history = Trainer(model, epochs=15, lr=0.05, progress=False).fit(feature_data(), feature_data())
    assert not calls
    assert history[-1]["val_acc"] > 0.9 > history[0]["train_acc"] - 0.5


def test_penalty_shrinks_the_penalised_branch():
    plain, penalised = head_model(), head_model()
    Trainer(plain, epochs=10, lr=0.05, progress=False).fit(feature_data())
    Trainer(
        penalised,
        epochs=10,
        lr=0.05,
        progress=False,
        regularizers=[ModalityWeightPenalty("fg", alpha=0.5)],
    ).fit(feature_data())
    norm = lambda m, k: m.fusion.branch(k).weight.norm().item()  # noqa: E731
    assert norm(penalised, "fg") < 0.5 * norm(plain, "fg")


def test_adversarial_training_calls_the_attack_each_step():
    model = head_model()
    attack = FGSM(eps=0.5, targets=("fg",))
    calls = []
    original = attack.perturb
    attack.perturb = lambda ctx, x: calls.append(1) or original(ctx, x)
    Trainer(model, epochs=1, batch_size=64, progress=False, adversarial=attack).fit(feature_data())
    assert len(calls) == 4  # 256 items in batches of 64


def test_bad_settings():
    with pytest.raises(KeyError, match="names modality 'audio'"):
        Trainer(head_model(), regularizers=[ModalityWeightPenalty("audio")])
    with pytest.raises(ValueError, match="need epochs"):
        Trainer(head_model(), epochs=0)
    with pytest.raises(ValueError, match="empty"):
        Trainer(head_model(), progress=False).fit(
            StackedDataset({"fg": torch.zeros(0, 2)}, torch.zeros(0))
        )


def test_evaluate_restores_every_submodule_mode():
    model = head_model().train()
    model.encoders["fg"].eval()  # a part the user keeps in eval mode inside a training model
    modes = {name: m.training for name, m in model.named_modules()}
    trainer = Trainer(model, progress=False)
    seen = []
    model.fusion.register_forward_hook(lambda mod, *_: seen.append(mod.training))
    trainer.evaluate(feature_data(32))
    assert seen and not any(seen)  # evaluated in eval mode
    assert {name: m.training for name, m in model.named_modules()} == modes


def test_checkpoint_state_json_keeps_its_keys(tmp_path):
    # Resuming reads these keys: a run checkpointed before the TrainState split still resumes.
    train_job.run(str(tmp_path), epochs=1, resume=False)
    state = json.loads((tmp_path / "checkpoints" / "epoch-0000" / "state.json").read_text())
    assert sorted(state) == ["best", "epoch", "epochs", "history", "optimizer", "seed"]
    assert state["epoch"] == 0 and state["epochs"] == 1 and state["seed"] == 7
