"""FeatureCache: frozen encoders' features for a dataset, computed once, stored as safetensors.

An entry is keyed by everything that changes its content: the encoder's full identity (its
spec, its structure, every parameter and every buffer, persistent or not, and the views in
front of it: :func:`modfuse.data.hashing.feature_identity`), how it is computed (autocast's
device type and dtype under ``amp``), the dataset (its ``fingerprint()``, else every sample)
and the perturbation applied (its class and every setting, functions by their code:
:meth:`modfuse.attacks.Attack.fingerprint`). A change to any of them computes the entry anew;
an unchanged setup computes nothing. What cannot be keyed (a callable object among a
perturbation's settings, unhashable dataset values) is computed, never stored, with a warning.

Entries are written atomically (a temporary file, then a rename); a damaged entry is detected
on read and rebuilt, never used, and the temporary files of a killed write are removed when a
cache next opens the folder (:mod:`modfuse.data.cache_files`).
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
from modfuse.data.cache_files import remove_stale_temporaries
from modfuse.data.contracts import CacheableModel, Perturbation
from modfuse.data.extract import extract_features
from modfuse.data.hashing import (
    UnhashableSampleError,
    dataset_fingerprint,
    feature_identity,
    module_hash,
    tensor_digest,
)
from modfuse.data.loader import StackedDataset, check_not_array
from modfuse.devices import autocast, model_device
from modfuse.io.tensor_files import load_tensors, save_tensors

# The hashes lived here first; code that imports them from this module keeps working.
__all__ = [
    "CACHE_FORMAT",
    "FeatureCache",
    "FeatureDataset",
    "dataset_fingerprint",
    "module_hash",
    "tensor_digest",
]

CACHE_FORMAT = "modfuse.FeatureCache/2"  # 2: keys hold every buffer, amp, functions' code


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
        amp: Extract in bfloat16 under ``torch.autocast`` (stored as float32, keyed apart
            from full-precision features).

    Opening a cache removes the temporary files of writes killed earlier
    (:func:`~modfuse.data.cache_files.remove_stale_temporaries`; their names are in
    ``removed``). Under torchrun each rank extracts its shard of the items and the shards are
    gathered; rank 0 alone writes the entry.

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
        # Rank 0 alone writes entries, so it alone cleans up after killed writes.
        self.removed = remove_stale_temporaries(self.root) if dist_utils.is_main() else []

    def key(
        self,
        model: nn.Module,
        modality: str,
        dataset: Dataset,
        perturbation: Perturbation | None = None,
    ) -> str | None:
        """The entry name for one modality's features under one setup.

        None when what the features depend on cannot be keyed: a perturbation that changes
        this modality's features (see :func:`modfuse.attacks.keys.perturbation_key`), or a
        dataset without ``fingerprint()`` whose samples cannot be hashed. Such features are
        not cached.

        Raises:
            TypeError: ``model`` is not a :class:`~modfuse.data.contracts.CacheableModel`,
                ``perturbation`` not a :class:`~modfuse.data.contracts.Perturbation`, or
                ``dataset`` has no length.
        """
        keys, _ = self._keys(model, [modality], dataset, _checked_perturbation(perturbation))
        return keys[modality]

    def _keys(
        self,
        model: nn.Module,
        modalities: Sequence[str],
        dataset: Dataset,
        perturbation: Perturbation | None,
    ) -> tuple[dict[str, str | None], str]:
        """Each modality's entry name (None: not keyed), and why those not keyed are not."""
        # Imported here: attack keys hash tensors with modfuse.data.hashing, which imports
        # this package; a top-level import would load the two halfway through each other.
        from modfuse.attacks.keys import perturbation_key

        if not isinstance(model, CacheableModel):
            raise TypeError(_not_cacheable(model))
        try:
            data = dataset_fingerprint(dataset)  # once: it may read every sample
        except UnhashableSampleError as err:
            return {m: None for m in modalities}, str(err)
        attack, why = perturbation_key(perturbation) if perturbation is not None else (None, "")
        keys: dict[str, str | None] = {}
        for m in modalities:
            moved = perturbation is not None and (
                m in perturbation.targets or not set(perturbation.targets) <= set(model.modalities)
            )  # perturbing only other modalities' inputs leaves this one's features as they were
            if moved and attack is None:
                keys[m] = None
                continue
            parts = {
                "format": CACHE_FORMAT,
                "features": feature_identity(model, m),
                "compute": self._compute(model),
                "dataset": data,
                "perturbation": attack if moved else None,
            }
            if moved and perturbation is not None and perturbation.depends_on_model:
                # A gradient or query attack depends on the whole model, head included.
                parts["model"] = module_hash(model, model.spec)
            digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
            keys[m] = f"{m}-{digest}"
        return keys, why

    def _compute(self, model: nn.Module) -> dict[str, str] | None:
        """How features are computed, where that changes them: autocast's device type and
        dtype under ``amp`` (bfloat16 features differ from float32 ones by about 1e-3)."""
        if not self.amp:
            return None
        device = model_device(model).type
        with autocast(model, True):
            dtype = torch.get_autocast_dtype(device)
        return {"autocast": device, "dtype": str(dtype)}

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
            TypeError: ``model`` or ``perturbation`` does not meet its contract (above), or
                ``dataset`` is a numpy array or a tensor rather than dict samples.
        """
        if not isinstance(model, CacheableModel):
            raise TypeError(_not_cacheable(model))
        perturbation = _checked_perturbation(perturbation)
        modalities = list(modalities or model.modalities)
        unknown = [m for m in modalities if m not in model.modalities]
        if unknown:
            raise KeyError(f"modality {unknown[0]!r} not in the model; it has {model.modalities}")
        self.computed, self.rebuilt, self.uncached = [], [], []
        check_not_array(dataset)  # before the key hashes every row of it
        keys, why = self._keys(model, modalities, dataset, perturbation)
        paths = {m: self.root / f"{k}.safetensors" for m, k in keys.items() if k is not None}
        self.uncached = [m for m in modalities if m not in paths]
        if self.uncached:
            under = "" if perturbation is None else f" under {perturbation!r}"
            warnings.warn(
                f"features of {self.uncached}{under} are computed and not cached: {why}",
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
