"""The resume file of a robustness sweep: running counts saved after each batch, keyed by
what the sweep is (models' weights, data, perturbations, batch size, world), so that a sweep
killed midway continues where it stopped and one of another configuration starts over.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from modfuse import distributed as dist_utils
from modfuse.attacks.keys import perturbation_key
from modfuse.data.cache import module_hash
from modfuse.data.contracts import CacheableModel
from modfuse.io.tensor_files import atomic_write_json
from modfuse.robustness.tally import Tally


class ResumeFile:
    """Running counts of a sweep, saved after each batch and keyed by what the sweep is."""

    def __init__(
        self,
        path: Any,
        models: Mapping[str, Any],
        data: Dataset,
        sweeps: Sequence[Any],
        batch_size: int,
    ) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is None:
            return
        from modfuse.data.cache import dataset_fingerprint

        keys = [(s.name, *perturbation_key(s.attack)) for s in sweeps]
        unkeyable = [f"sweep {name!r}: {why}" for name, key, why in keys if key is None]
        if unkeyable:
            # Counts resumed from another configuration would be silently wrong rows.
            warnings.warn(
                f"resume file {str(self.path)!r} not used: {'; '.join(unkeyable)}",
                stacklevel=3,
            )
            self.path = None
            return
        what = {
            "format": 2,  # counts per class and predictions (format 1: correct answers only)
            # Spec too: models differing only in settings that are no tensors (views) differ.
            "models": {
                n: module_hash(m, m.spec if isinstance(m, CacheableModel) else None)
                for n, m in models.items()
            },
            "data": dataset_fingerprint(data),
            "sweeps": [
                [s.name, key, [float(v) for v in s.strengths], s.source]
                for s, (_, key, _) in zip(sweeps, keys)
            ],
            "batch_size": batch_size,
            "world": dist_utils.world_size(),
            "rank": dist_utils.rank(),
        }
        self.key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()

    def load(self, tally: Tally) -> int:
        """Fill ``tally`` from a matching file; returns the number of batches done."""
        if self.path is None or not self.path.is_file():
            return 0
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return 0  # unreadable: start over
        if saved.get("key") != self.key:
            return 0  # another sweep's file: start over (it is overwritten)
        tally.load_state(saved["counts"])
        return int(saved["batches"])

    def save(self, batches: int, tally: Tally) -> None:
        if self.path is not None:
            atomic_write_json(
                self.path, {"key": self.key, "batches": batches, "counts": tally.state()}
            )

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
