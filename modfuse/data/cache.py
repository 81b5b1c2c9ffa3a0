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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from modfuse import distributed as dist_utils
from modfuse.checkpoint import load_tensors, save_tensors
from modfuse.data.loader import StackedDataset, make_loader
from modfuse.devices import autocast, to_model
from modfuse.modes import eval_mode

CACHE_FORMAT = "modfuse.FeatureCache/1"


def _hash_tensor(h: Any, t: torch.Tensor) -> None:
    """Feed a tensor's dtype, shape and bytes to the hash ``h``."""
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(-1).view(torch.uint8).numpy().tobytes())


def module_hash(module: torch.nn.Module, spec: Any = None) -> str:
    """A hash of a module's spec and every tensor in its state (weights and buffers)."""
    h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        _hash_tensor(h, t)
    return h.hexdigest()[:16]


def tensor_digest(tensors: Sequence[torch.Tensor]) -> str:
    """A hash of tensors' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for t in tensors:
        _hash_tensor(h, t)
    return h.hexdigest()[:16]


def dataset_fingerprint(dataset: Dataset) -> str:
    """The dataset's own ``fingerprint()`` where it has one, else a hash of its contents.

    Without a ``fingerprint()``, the length, the type and 16 samples spread over the dataset
    are hashed: datasets that differ only elsewhere would collide, so give yours one.
    """
    if hasattr(dataset, "fingerprint"):
        return str(dataset.fingerprint())
    n = len(dataset)
    picks = sorted({round(i * (n - 1) / 15) for i in range(16)}) if n else []
    parts = []
    for i in picks:
        sample = dataset[i]
        items = sample.items() if isinstance(sample, Mapping) else enumerate(sample)
        parts += [
            torch.as_tensor(v)
            for _, v in sorted(items, key=lambda kv: str(kv[0]))
            if isinstance(v, torch.Tensor | int | float)
        ]
    return tensor_digest([torch.tensor([n]), *parts]) + f"-{type(dataset).__qualname__}"


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
        model: torch.nn.Module,
        modality: str,
        dataset: Dataset,
        perturbation: Any = None,
    ) -> str | None:
        """The entry name for one modality's features under one setup.

        None when the perturbation changes this modality's features but cannot be keyed (see
        :func:`modfuse.attacks.keys.perturbation_key`): such features are not cached.
        """
        from modfuse.attacks.keys import perturbation_key

        targets = set(getattr(perturbation, "targets", ()))
        if (
            perturbation is not None
            and modality not in targets
            and targets <= set(model.modalities)
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
        if perturbation is not None and getattr(perturbation, "depends_on_model", True):
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
        model: torch.nn.Module,
        dataset: Dataset,
        modalities: Sequence[str] | None = None,
        perturbation: Any = None,
    ) -> FeatureDataset:
        """Features of ``modalities`` (default: all of the model's) for every item of ``dataset``.

        Args:
            model: A FusionModel whose encoders are frozen (every submodule's mode is
                restored afterwards).
            dataset: Dict samples with the model's inputs and a ``label``.
            modalities: Which modalities to return.
            perturbation: An attack applied to each batch before encoding (blur, FGSM...).
        """
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
        found = {m: self._read(paths[m]) if m in paths else None for m in modalities}
        todo = [m for m in modalities if found[m] is None]
        if todo:
            computed, labels = self._extract(model, dataset, todo, perturbation)
            for m in todo:
                entry = {"features": computed[m], "label": labels}
                if dist_utils.is_main() and m in paths:
                    save_tensors(paths[m], entry, {"format": CACHE_FORMAT})
                found[m] = entry
            dist_utils.barrier()
            self.computed = todo
        labels = found[modalities[0]]["label"]
        return FeatureDataset({m: found[m]["features"] for m in modalities}, labels)

    def _extract(
        self, model: torch.nn.Module, dataset: Dataset, todo: list[str], perturbation: Any
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        indices = dist_utils.shard_indices(len(dataset))  # all items in one process
        shard = dataset if dist_utils.world_size() == 1 else Subset(dataset, indices)
        loader = make_loader(shard, self.batch_size, shuffle=False, workers=self.workers)
        out: dict[str, list[torch.Tensor]] = {m: [] for m in todo}
        labels = []
        # A perturbation of a view ("fg") needs the views themselves as inputs; one of the raw
        # image needs the raw inputs. With none: the views the dataset already made, when it
        # made them with the model's own settings (the same per-sample computation, so the same
        # features, without computing the views twice); else the model's default.
        raw = None if perturbation is None else bool({"image", "mask"} & set(perturbation.targets))
        if perturbation is None and _same_views(model, dataset):
            raw = False
        with eval_mode(model):
            bar = tqdm(loader, desc=f"features {','.join(todo)}", disable=not self.progress)
            for batch in bar:
                batch = to_model(batch, model)
                inputs = model.select(batch, raw=raw)
                y = torch.as_tensor(batch["label"])
                if perturbation is not None:
                    inputs = perturbation(model, inputs, y)
                with torch.no_grad(), autocast(model, self.amp):
                    prepared = model.prepare(inputs)
                    for m in todo:
                        # Stored on the CPU in float32, whatever the model's device and dtype.
                        out[m].append(model.encoders[m](prepared[m]).float().cpu())
                labels.append(y.cpu())
        feats = {m: torch.cat(v) for m, v in out.items()}
        y = torch.cat(labels).long()
        if dist_utils.world_size() > 1:
            feats = {m: _gather_shards(f, len(dataset)) for m, f in feats.items()}
            y = _gather_shards(y, len(dataset))
        return feats, y


def _same_views(model: torch.nn.Module, dataset: Dataset) -> bool:
    """Whether ``dataset`` makes its fg / bg views with the model's views settings."""
    mine, theirs = getattr(model, "views", None), getattr(dataset, "views", None)
    return mine is not None and theirs is not None and mine.config() == theirs.config()


def _gather_shards(local: torch.Tensor, n: int) -> torch.Tensor:
    """Reassemble per-rank shards (rank r holds items r, r + W, ...) into all ``n`` items."""
    import torch.distributed as dist

    world = dist_utils.world_size()
    size = -(-n // world)  # the largest shard; smaller ones are padded for all_gather
    padded = local.new_zeros((size, *local.shape[1:]))
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    full = local.new_empty((n, *local.shape[1:]))
    for r, part in enumerate(parts):
        count = len(range(r, n, world))
        full[r::world] = part[:count]
    return full
