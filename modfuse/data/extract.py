"""One pass of a model's encoders over a dataset: the features a FeatureCache stores.

Split out of :mod:`modfuse.data.cache`, which decides what to compute and where to keep it;
this module computes it: batches on the model's device, an optional perturbation applied to
each batch, features kept on the CPU in float32 and, under torchrun, each rank's shard
gathered.
"""

from __future__ import annotations

from collections.abc import Sized

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

import modfuse.distributed as dist_utils
from modfuse.data.contracts import CacheableModel, HasViews, Perturbation, ViewMaker
from modfuse.data.loader import make_loader
from modfuse.devices import autocast, to_model
from modfuse.modes import eval_mode
from modfuse.validation import labels_of

__all__ = ["extract_features"]


def extract_features(
    model: nn.Module,
    dataset: Dataset,
    modalities: list[str],
    perturbation: Perturbation | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    progress: bool = False,
    amp: bool = False,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each of ``modalities``' features for every item of ``dataset``, and the labels.

    Args:
        model: A :class:`~modfuse.data.contracts.CacheableModel` (a FusionModel); it runs in
            eval mode, and every submodule's mode is restored afterwards.
        dataset: Map-style dataset of dict samples with the model's inputs and a ``label``.
        modalities: Which encoders to run.
        perturbation: Applied to each batch's inputs before encoding (an Attack).
        batch_size: Items per batch.
        workers: DataLoader workers (None: :func:`modfuse.data.loader.default_workers`).
        progress: Show a progress bar.
        amp: Encode under ``torch.autocast`` (features are stored as float32 all the same).

    Returns:
        ``({modality: (N, D_m) float32 on the CPU}, labels (N,) int64)``.

    Raises:
        TypeError: ``model`` is not a CacheableModel, or ``dataset`` has no length.

    Examples:
        >>> from modfuse import FusionModel
        >>> data = [{"a": torch.rand(3), "label": i % 2} for i in range(5)]
        >>> model = FusionModel({"a": {"name": "mlp", "in_dim": 3}}, num_classes=2)
        >>> feats, labels = extract_features(model, data, ["a"], batch_size=2)
        >>> feats["a"].shape[0], labels.tolist()
        (5, [0, 1, 0, 1, 0])
    """
    if not isinstance(model, CacheableModel):
        raise TypeError(
            "expected a model with encoders, spec, views, prepare and state_dict "
            f"(modfuse.data.contracts.CacheableModel), got {type(model).__name__}"
        )
    if not isinstance(dataset, Sized):
        raise TypeError(f"expected a map-style dataset with a length, got {type(dataset).__name__}")
    n = len(dataset)
    indices = dist_utils.shard_indices(n)  # all items in one process
    shard = dataset if dist_utils.world_size() == 1 else Subset(dataset, indices)
    loader = make_loader(shard, batch_size, shuffle=False, workers=workers)
    out: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
    labels = []
    # A perturbation of a view ("fg") needs the views themselves as inputs; one of the raw
    # image needs the raw inputs. With none: the views the dataset already made, when it made
    # them with the model's own settings (the same per-sample computation, so the same
    # features, without computing the views twice); else the model's default.
    raw = None if perturbation is None else bool({"image", "mask"} & set(perturbation.targets))
    if perturbation is None and _same_views(model, dataset):
        raw = False
    with eval_mode(model):
        bar = tqdm(loader, desc=f"features {','.join(modalities)}", disable=not progress)
        for batch in bar:
            batch = to_model(batch, model)
            inputs = model.select(batch, raw=raw)
            y = labels_of(batch)
            if perturbation is not None:
                inputs = perturbation(model, inputs, y)
            with torch.no_grad(), autocast(model, amp):
                prepared = model.prepare(inputs)
                for m in modalities:
                    # Stored on the CPU in float32, whatever the model's device and dtype.
                    out[m].append(model.encoders[m](prepared[m]).float().cpu())
            labels.append(y.cpu())
    feats = {m: torch.cat(v) for m, v in out.items()}
    y = torch.cat(labels).long()
    if dist_utils.world_size() > 1:
        feats = {m: _gather_shards(f, n) for m, f in feats.items()}
        y = _gather_shards(y, n)
    return feats, y


def _same_views(model: CacheableModel, dataset: Dataset) -> bool:
    """Whether ``dataset`` makes its fg / bg views with the model's views settings."""
    mine = model.views
    theirs = dataset.views if isinstance(dataset, HasViews) else None
    return (
        isinstance(mine, ViewMaker)
        and isinstance(theirs, ViewMaker)
        and mine.config() == theirs.config()
    )


def _gather_shards(local: torch.Tensor, n: int) -> torch.Tensor:
    """Reassemble per-rank shards (rank r holds items r, r + W, ...) into all ``n`` items."""
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
