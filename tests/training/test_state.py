"""TrainState: model, optimizer, LR scheduler and RNG state survive a save and a load, as
safetensors + JSON only; epochs are published through latest.json."""

import json

import pytest
import torch
from torch import nn

from modfuse.training.state import TrainState, load_latest, save_epoch


def setup(gamma: float = 0.5) -> TrainState:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=gamma)
    return TrainState(model, opt, sched)


def train(state: TrainState, steps: int) -> None:
    for _ in range(steps):
        x = torch.randn(8, 3)  # draws from the global RNG: restored with the state
        state.optimizer.zero_grad()
        state.model(x).pow(2).mean().backward()
        state.optimizer.step()
        state.scheduler.step()


def test_resumed_state_continues_exactly_like_an_uninterrupted_one(tmp_path):
    uninterrupted = setup()
    train(uninterrupted, 3)
    uninterrupted.save(tmp_path / "ckpt", {"note": "three steps"})
    train(uninterrupted, 4)

    resumed = setup(gamma=0.9)  # a different schedule: the saved state must replace it
    torch.manual_seed(123)  # and a different RNG position
    assert resumed.load(tmp_path / "ckpt") == {"note": "three steps"}
    assert resumed.scheduler.get_last_lr() == pytest.approx([0.05])  # 0.1, halved after 2
    train(resumed, 4)
    for k, v in uninterrupted.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert resumed.scheduler.state_dict() == uninterrupted.scheduler.state_dict()
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]
    assert "scheduler" in json.loads((tmp_path / "ckpt" / "state.json").read_text())


def test_a_scheduler_mismatch_is_named(tmp_path):
    with_sched = setup()
    with_sched.save(tmp_path / "a")
    without = TrainState(with_sched.model, with_sched.optimizer)
    with pytest.raises(ValueError, match="holds a learning-rate scheduler state, .* given none"):
        without.load(tmp_path / "a")
    without.save(tmp_path / "b")
    with pytest.raises(ValueError, match="holds no learning-rate scheduler state, .* given one"):
        with_sched.load(tmp_path / "b")


class Warmup:
    """A schedule held as an object: LambdaLR stores its __dict__, here with a tensor."""

    def __init__(self) -> None:
        self.scale = torch.tensor(2.0)

    def __call__(self, epoch: int) -> float:
        return float(self.scale) * (epoch + 1)


def test_a_scheduler_state_that_json_cannot_hold_is_refused(tmp_path):
    state = setup()
    state.scheduler = torch.optim.lr_scheduler.LambdaLR(state.optimizer, Warmup())
    with pytest.raises(ValueError, match="cannot checkpoint LambdaLR: its state_dict must hold"):
        state.save(tmp_path / "c")


def test_epochs_are_published_through_latest_and_older_ones_removed(tmp_path):
    state = setup()
    assert load_latest(tmp_path, state) is None
    for epoch in range(3):
        train(state, 1)
        save_epoch(tmp_path, epoch, state, {"history": list(range(epoch + 1))})
    assert json.loads((tmp_path / "latest.json").read_text()) == {
        "epoch": 2,
        "folder": "epoch-0002",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0002", "latest.json"]
    fresh = setup()
    assert load_latest(tmp_path, fresh) == {"epoch": 2, "history": [0, 1, 2]}
    for k, v in state.model.state_dict().items():
        assert torch.equal(v, fresh.model.state_dict()[k]), k
