"""FeatureCache: frozen encoders' features for a dataset, computed once, stored as safetensors.

An entry is keyed by a hash of the encoder (its spec and every weight), the dataset's
fingerprint and the perturbation applied (its class and every setting, loss function included:
:meth:`modfuse.attacks.Attack.fingerprint`), so a change to any of them computes it anew and an
unchanged setup computes nothing. A perturbation that cannot be keyed (a lambda loss) is
computed every time and never stored. Entries are written atomically; a damaged entry is
detected on read and rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn
from torch.utils.data import Dataset

import modfuse.distributed as dist_utils
from modfuse.data.contracts import CacheableModel, Perturbation
from modfuse.data.extract import extract_features
from modfuse.data.hashing import dataset_fingerprint, module_hash, tensor_digest
from modfuse.data.loader import StackedDataset
from modfuse.tensor_files import load_tensors, save_tensors

# The hashes lived here first; code that imports them from this module keeps working.
__all__ = [
    "CACHE_FORMAT",
    "FeatureCache",
    "FeatureDataset",
    "dataset_fingerprint",
    "module_hash",
    "tensor_digest",
]

CACHE_FORMAT = "modfuse.FeatureCache/1"


class FeatureDataset(StackedDataset):
    """Cached features as dict samples ``{modality: (D_m,), "label": int}``.

    Training and evaluation code treat it as features (the model runs ``fuse`` only).

    Examples:
        >>> data = FeatureDataset({"fg": torch.rand(4, 8)}, torch.tensor([0, 1, 0, 1]))
        >>> len(data), data[1]["fg"].shape, data[1]["label"]
        (4, torch.Size([8]), 1)
    """

    def fingerprint(self) -> str:
        return tensor_digest([*self.tensors.values(), self.labels])

    @property
    def features(self) -> dict[str, torch.Tensor]:
        return self.tensors

    def select(self, modalities: Sequence[str]) -> FeatureDataset:
        """The same items with only ``modalities``."""
        return FeatureDataset({m: self.tensors[m] for m in modalities}, self.labels)


class FeatureCache:
    """Compute each modality's features for a dataset once; reuse them across runs.

    Args:
        root: Cache folder.
        batch_size: Batch size of the extraction pass.
        workers: DataLoader workers (None: :func:`modfuse.data.loader.default_workers`).
        progress: Show a progress bar while extracting.
        amp: Extract in bfloat16 under ``torch.autocast`` (stored as float32).

    Under torchrun each rank extracts its shard of the items and the shards are gathered;
    rank 0 alone writes the entry.

    Examples:
        >>> import tempfile
        >>> from modfuse import FusionModel
        >>> data = [{"fg": torch.rand(3, 8, 8), "label": i % 2} for i in range(6)]
        >>> model = FusionModel({"fg": "small_cnn"}, num_classes=2)
        >>> cache = FeatureCache(tempfile.mkdtemp(), progress=False)
        >>> feats = cache.features(model, data)
        >>> feats.features["fg"].shape, cache.computed
        (torch.Size([6, 128]), ['fg'])
        >>> _ = cache.features(model, data); cache.computed
        []
    """

    def __init__(
        self,
        root: str | os.PathLike,
        batch_size: int = 64,
        workers: int | None = None,
        progress: bool = True,
        amp: bool = False,
    ) -> None:
        self.root = Path(root)
        self.amp = amp
        self.batch_size = batch_size
        self.workers = workers
        self.progress = progress
        self.computed: list[str] = []  # modalities computed (not read) by the last call
        self.rebuilt: list[str] = []  # damaged entries found and rebuilt by the last call
        self.uncached: list[str] = []  # modalities computed but not stored: no key (last call)

    def key(
        self,
        model: nn.Module,
        modality: str,
        dataset: Dataset,
        perturbation: Perturbation | None = None,
    ) -> str | None:
        """The entry name for one modality's features under one setup.

        None when the perturbation changes this modality's features but cannot be keyed (see
        :func:`modfuse.attacks.keys.perturbation_key`): such features are not cached.

        Raises:
            TypeError: ``model`` is not a :class:`~modfuse.data.contracts.CacheableModel` or
                ``perturbation`` not a :class:`~modfuse.data.contracts.Perturbation`.
        """
        # Imported here: attack keys hash tensors with modfuse.data.hashing, which imports
        # this package; a top-level import would load the two halfway through each other.
        from modfuse.attacks.keys import perturbation_key

        if not isinstance(model, CacheableModel):
            raise TypeError(_not_cacheable(model))
        perturbation = _checked_perturbation(perturbation)
        if (
            perturbation is not None
            and modality not in perturbation.targets
            and set(perturbation.targets) <= set(model.modalities)
        ):
            # Perturbing other modalities' inputs leaves this one's features as they were.
            perturbation = None
        fingerprint = None
        if perturbation is not None:
            fingerprint, _ = perturbation_key(perturbation)
            if fingerprint is None:
                return None
        parts = {
            "format": CACHE_FORMAT,
            "encoder": module_hash(model.encoders[modality], model.spec["encoders"].get(modality)),
            "views": model.spec.get("views"),
            "dataset": dataset_fingerprint(dataset),
            "perturbation": fingerprint,
        }
        if perturbation is not None and perturbation.depends_on_model:
            # A gradient or query attack depends on the whole model, head included.
            parts["model"] = module_hash(model, model.spec)
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
        return f"{modality}-{digest}"

    def _read(self, path: Path) -> dict[str, torch.Tensor] | None:
        if not path.is_file():
            return None
        try:
            entry = load_tensors(path)
        except (ValueError, SafetensorError, OSError):
            self.rebuilt.append(path.name)
            return None
        if "features" not in entry or "label" not in entry:
            self.rebuilt.append(path.name)
            return None
        return entry

    def features(
        self,
        model: nn.Module,
        dataset: Dataset,
        modalities: Sequence[str] | None = None,
        perturbation: Perturbation | None = None,
    ) -> FeatureDataset:
        """Features of ``modalities`` (default: all of the model's) for every item of ``dataset``.

        Args:
            model: A FusionModel whose encoders are frozen (every submodule's mode is
                restored afterwards); any :class:`~modfuse.data.contracts.CacheableModel`.
            dataset: Dict samples with the model's inputs and a ``label``.
            modalities: Which modalities to return.
            perturbation: An attack applied to each batch before encoding (blur, FGSM...): a
                :class:`modfuse.attacks.Attack`, or any
                :class:`~modfuse.data.contracts.Perturbation`.

        Raises:
            KeyError: a modality the model does not have.
            TypeError: ``model`` or ``perturbation`` does not meet its contract (above).
        """
        if not isinstance(model, CacheableModel):
            raise TypeError(_not_cacheable(model))
        perturbation = _checked_perturbation(perturbation)
        modalities = list(modalities or model.modalities)
        unknown = [m for m in modalities if m not in model.modalities]
        if unknown:
            raise KeyError(f"modality {unknown[0]!r} not in the model; it has {model.modalities}")
        self.computed, self.rebuilt, self.uncached = [], [], []
        keys = {m: self.key(model, m, dataset, perturbation) for m in modalities}
        paths = {m: self.root / f"{k}.safetensors" for m, k in keys.items() if k is not None}
        self.uncached = [m for m in modalities if m not in paths]
        if self.uncached:
            from modfuse.attacks.keys import perturbation_key

            warnings.warn(
                f"features of {self.uncached} under {perturbation!r} are computed and not "
                f"cached: {perturbation_key(perturbation)[1]}",
                stacklevel=2,
            )
        found: dict[str, dict[str, torch.Tensor]] = {}
        for m in modalities:
            entry = self._read(paths[m]) if m in paths else None
            if entry is not None:
                found[m] = entry
        todo = [m for m in modalities if m not in found]
        if todo:
            computed, labels = extract_features(
                model,
                dataset,
                todo,
                perturbation,
                self.batch_size,
                self.workers,
                self.progress,
                self.amp,
            )
            for m in todo:
                found[m] = {"features": computed[m], "label": labels}
                if dist_utils.is_main() and m in paths:
                    save_tensors(paths[m], found[m], {"format": CACHE_FORMAT})
            dist_utils.barrier()
            self.computed = todo
        labels = found[modalities[0]]["label"]
        return FeatureDataset({m: found[m]["features"] for m in modalities}, labels)


def _not_cacheable(model: object) -> str:
    return (
        "expected a model with encoders, spec, views, prepare and state_dict "
        f"(modfuse.data.contracts.CacheableModel, e.g. a FusionModel), got {type(model).__name__}"
    )


def _checked_perturbation(perturbation: object) -> Perturbation | None:
    """``perturbation`` itself when it is None or a Perturbation; else a TypeError."""
    if perturbation is None or isinstance(perturbation, Perturbation):
        return perturbation
    raise TypeError(
        "perturbation must be a modfuse Attack (or have targets, depends_on_model and "
        "__call__(model, inputs, labels): modfuse.data.contracts.Perturbation), got "
        f"{type(perturbation).__name__}"
    )
