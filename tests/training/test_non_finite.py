"""A run whose loss turns NaN or infinite stops at once, names where, and keeps the last good
checkpoint; learning rates and weight decays that are not finite are refused up front."""

import json
import math

import pytest
import torch

from modfuse import FusionModel
from modfuse.data import FeatureDataset
from modfuse.io import load_tensors
from modfuse.training.trainer import NonFiniteLossError, Trainer


class BlowUpAt:
    """A regularizer that adds an infinite term from its ``at``-th call on (1-based)."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, model, batch, outputs) -> torch.Tensor:
        self.calls += 1
        return torch.tensor(math.inf if self.calls >= self.at else 0.0)


def task() -> tuple[FusionModel, FeatureDataset]:
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    data = FeatureDataset({"a": x}, (x[:, 0] > 0).long())
    mlp = {"name": "mlp", "in_dim": 4, "hidden": [4]}  # out_dim 4: the features fit the head
    return FusionModel({"a": mlp}, num_classes=2), data


def test_infinite_loss_stops_naming_epoch_and_step_and_keeps_the_last_checkpoint(tmp_path):
    model, data = task()
    # 16 items a batch: 2 steps an epoch; the 3rd step (epoch 2, step 1) goes infinite.
    trainer = Trainer(
        model, epochs=4, batch_size=16, progress=False, run_dir=tmp_path, regularizers=[BlowUpAt(3)]
    )
    with pytest.raises(NonFiniteLossError, match=r"loss is inf at epoch 2/4, step 1/2"):
        trainer.fit(data, data)
    latest = json.loads((tmp_path / "checkpoints" / "latest.json").read_text())
    assert latest["epoch"] == 0  # epoch 1 finished and is the checkpoint to resume from
    saved = load_tensors(tmp_path / "checkpoints" / latest["folder"] / "model.safetensors")
    best = load_tensors(tmp_path / "best.safetensors")
    for state in (saved, best, model.state_dict()):
        assert all(bool(torch.isfinite(v).all()) for v in state.values())
    # The weights in memory are those before the bad step: exactly the checkpoint's.
    current = model.state_dict()
    assert all(torch.equal(current[k], saved[k]) for k in saved)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": math.inf}, "lr must be a finite number > 0, got inf"),
        ({"lr": math.nan}, "lr must be a finite number > 0, got nan"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"weight_decay": math.inf}, "weight_decay must be a finite number >= 0, got inf"),
        ({"weight_decay": -0.1}, "weight_decay must be a finite number >= 0"),
        ({"adversarial_mix": math.nan}, "adversarial_mix must be in"),
    ],
)
def test_non_finite_settings_are_refused_before_training(kwargs, match):
    model, _ = task()
    with pytest.raises(ValueError, match=match):
        Trainer(model, progress=False, **kwargs)


def test_checkpoint_rng_state_holds_every_gpu_and_restores_it(monkeypatch):
    """No GPU here: torch.cuda is stood in for, to check what is saved and restored."""
    from modfuse.training import state as train_state

    gpu_states = [torch.tensor([1, 2], dtype=torch.uint8), torch.tensor([3], dtype=torch.uint8)]
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: gpu_states)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: restored.__setitem__(i, s))
    state = train_state.rng_state()
    assert sorted(state) == ["cuda.0", "cuda.1", "torch"]
    train_state.set_rng_state(state)
    assert torch.equal(restored[0], gpu_states[0]) and torch.equal(restored[1], gpu_states[1])
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.warns(UserWarning, match="RNG state of 2 GPUs, this machine uses 1"):
        train_state.set_rng_state(state)
