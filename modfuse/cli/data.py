"""Data for the ``modfuse`` command: the datasets a config names, the feature cache, and the
command's voice."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from modfuse.config.schema import ExperimentConfig

__all__ = ["build_data", "cached_features", "say"]


def say(msg: str) -> None:
    """Print a timestamped progress line (rank 0 only under torchrun)."""
    from modfuse import distributed

    if distributed.is_main():  # one voice under torchrun
        print(f"[modfuse {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_data(cfg: ExperimentConfig) -> tuple[Any, Any]:
    """(train, test) datasets for a config
    (:func:`modfuse.data.configured.datasets_from_config`)."""
    from modfuse.data.configured import datasets_from_config

    views = cfg.model.views.model_dump() if cfg.model.views else None
    return datasets_from_config(cfg.data, views, cfg.seed, say)


def cached_features(
    cfg: ExperimentConfig, model: Any, data: Any, out: Path, progress: bool, quiet: bool = False
) -> Any | None:
    """Features of ``data`` from the on-disk FeatureCache when every encoder is frozen (the
    head alone is then trained, and no encoder runs per epoch); None when they must run.
    ``quiet``: say nothing (the choice was said for the training data already)."""
    from modfuse.data import FeatureCache
    from modfuse.encoders.base import is_frozen

    moving = [m for m, enc in model.encoders.items() if not is_frozen(enc)]
    if moving:
        if not quiet:
            say(f"encoders {moving} are trained: no feature cache, every epoch runs them")
        return None
    if cfg.train.adversarial is not None:
        if not quiet:
            say("adversarial training attacks the inputs: no feature cache, every epoch runs them")
        return None
    root = out / "cache"
    if not quiet:
        say(
            f"every encoder is frozen: their features are cached once in {root}, then only the "
            "fusion head trains"
        )
    cache = FeatureCache(
        root, batch_size=cfg.eval.batch_size, workers=cfg.data.workers, progress=progress
    )
    return cache.features(model, data)


def data_hashes(cfg: ExperimentConfig, test: Any) -> dict[str, str]:
    """What the manifest records of the data: the test set's fingerprint and, for a
    generated (synthetic) world, a hash of every file of it."""
    from modfuse.data.hashing import dataset_fingerprint
    from modfuse.reporting.manifest import folder_digest

    found = {"test": dataset_fingerprint(test)}
    if cfg.data.kind == "synthetic":
        found["world"] = folder_digest(cfg.data.root)
    return found
