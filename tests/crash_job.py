"""Slow, deterministic sweep and cache jobs, run in a subprocess that the tests kill."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from modfuse import FusionModel
from modfuse.attacks import FGSM, GaussianNoise
from modfuse.data import FeatureCache, StackedDataset
from modfuse.robustness import Sweep, robustness_sweep


def setup():
    torch.manual_seed(0)
    mlp = {"name": "mlp", "in_dim": 6, "hidden": [16]}
    model = FusionModel({"a": mlp, "b": mlp}, num_classes=3).eval()
    g = torch.Generator().manual_seed(0)
    data = StackedDataset(
        {"a": torch.randn(200, 6, generator=g), "b": torch.randn(200, 6, generator=g)},
        torch.randint(0, 3, (200,), generator=g),
    )
    sweeps = [
        Sweep("fgsm", FGSM(targets=("a",)), [0.1, 0.5]),
        Sweep("noise", GaussianNoise(targets=("b",), seed=3), [0.5, 2.0]),
    ]
    return {"m": model}, data, sweeps


def slow_down(models, seconds: float, marker: str | None = None) -> None:
    """Sleep in every encoder call; touch ``marker`` at the first one (work has begun)."""

    def hook(*_):
        if marker:
            Path(marker).touch()
        time.sleep(seconds)

    if seconds:
        for model in models.values():
            for enc in model.encoders.values():
                enc.register_forward_hook(hook)


def sweep(resume_file: str, sleep: float = 0.0) -> list[dict]:
    models, data, sweeps = setup()
    slow_down(models, sleep)
    return list(
        robustness_sweep(
            models,
            data,
            sweeps,
            batch_size=20,
            progress=False,
            resume_file=resume_file,
            sanity=False,
        )
    )


def cache(root: str, sleep: float = 0.0) -> FeatureCache:
    models, data, _ = setup()
    slow_down(models, sleep, marker=f"{root}.started")
    c = FeatureCache(root, batch_size=20, progress=False)
    c.result = c.features(
        models["m"], data, perturbation=GaussianNoise(0.3, targets=("a",), seed=1)
    )
    return c


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("job", choices=["sweep", "cache"])
    parser.add_argument("path")
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    if args.job == "sweep":
        print(json.dumps(sweep(args.path, args.sleep)))
    else:
        cache(args.path, args.sleep)
