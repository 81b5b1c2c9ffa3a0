"""A study cut into units: train a model for a seed, evaluate it. Each unit has a folder, a key
(a hash of every setting that changes what it produces) and a marker written last, so a
finished unit is one whose marker holds its key, and anything else is redone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modfuse.config.specs import encoder_value
from modfuse.io.tensor_files import atomic_write_json, read_json
from modfuse.study.schema import StudyConfig

__all__ = ["Unit", "study_units"]

MARKER = "done.json"


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Unit:
    """One step of a study: ``kind`` ("train" or "evaluate") of ``model`` for ``seed``."""

    kind: Literal["train", "evaluate"]
    model: str
    seed: int
    key: str

    @property
    def label(self) -> str:
        return f"{self.kind} {self.model} seed {self.seed}"

    def folder(self, out: Path) -> Path:
        return out / "units" / self.model / f"seed{self.seed}" / self.kind

    def is_done(self, out: Path) -> bool:
        marker = self.folder(out) / MARKER
        return marker.is_file() and read_json(marker).get("key") == self.key

    def start(self, out: Path) -> Path:
        """The unit's folder, emptied when it holds the work of other settings (a changed
        study resumed with --force); work of this unit's own settings is kept (a resumed
        unit continues from its checkpoint)."""
        folder = self.folder(out)
        key_file = folder / "key.json"
        other = not key_file.is_file() or read_json(key_file).get("key") != self.key
        if folder.exists() and other:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not key_file.is_file():
            atomic_write_json(key_file, {"key": self.key})
        return folder

    def finish(self, out: Path, seconds: float) -> None:
        atomic_write_json(self.folder(out) / MARKER, {"key": self.key, "seconds": seconds})


def study_units(cfg: StudyConfig) -> list[Unit]:
    """Every unit, seed by seed and model by model, each training before its evaluation."""
    units = []
    for seed in cfg.seeds:
        for name, spec in cfg.models.items():
            trained = {
                "data": cfg.data.model_dump(mode="json"),
                "data_seed": seed if "data" in cfg.vary else cfg.seeds[0],
                "encoders_seed": seed if "encoders" in cfg.vary else cfg.seeds[0],
                "encoders": {m: encoder_value(cfg.encoders[m]) for m in spec.modalities},
                "model": spec.model_dump(mode="json"),
                "train": cfg.train.model_dump(mode="json"),
                "num_classes": cfg.num_classes,
                "seed": seed,
            }
            train_key = digest(trained)
            evaluated = {
                "trained": train_key,
                "evaluation": cfg.evaluation.model_dump(mode="json"),
                "threats": [t.model_dump(mode="json") for t in cfg.threat_models()],
            }
            units.append(Unit("train", name, seed, train_key))
            units.append(Unit("evaluate", name, seed, digest(evaluated)))
    return units
