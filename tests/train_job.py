"""A small, deterministic training job, run in-process or as a subprocess (kill tests)."""

from __future__ import annotations

import argparse
import time

import torch

from modfuse import FusionModel
from modfuse.data import StackedDataset
from modfuse.training.trainer import Trainer


class Sleep:
    """A regularizer that adds nothing and takes time: makes a run slow enough to kill."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, model, batch, outputs) -> torch.Tensor:
        time.sleep(self.seconds)
        return torch.zeros(())


def data() -> StackedDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 6, generator=g)
    y = (x[:, 0] + x[:, 3] > 0).long() + (x[:, 1] > 1).long()
    return StackedDataset({"a": x[:, :3].contiguous(), "b": x[:, 3:].contiguous()}, y)


def run(run_dir: str, sleep: float = 0.0, resume: bool = True, epochs: int = 4) -> FusionModel:
    torch.set_num_threads(2)
    torch.manual_seed(123)
    mlp = {"name": "mlp", "in_dim": 3, "hidden": [16, 8], "dropout": 0.2}
    model = FusionModel({"a": mlp, "b": mlp}, "gated", num_classes=3, fusion_dim=8)
    regs = [Sleep(sleep)] if sleep else []
    Trainer(
        model,
        epochs=epochs,
        batch_size=32,
        lr=0.01,
        seed=7,
        run_dir=run_dir,
        progress=False,
        regularizers=regs,
        modality_dropout=0.3,
        workers=0,
    ).fit(data(), data(), resume=resume)
    return model


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    run(args.run_dir, args.sleep)
