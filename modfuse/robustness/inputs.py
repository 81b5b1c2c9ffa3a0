"""Which inputs each model of a robustness sweep takes from a batch: the model as the sweep
sees it (a :class:`FeatureHead` on cached features), the modality tensors or the raw keys in
front of its views, which modalities a perturbation moves (and so which features can be
shared), and the views made from the raw keys when a batch lacks them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch.utils.data import Dataset

from modfuse.data.cache import FeatureDataset
from modfuse.devices import model_device, model_dtype
from modfuse.model.feature_head import FeatureHead
from modfuse.model.fusion_model import FusionModel
from modfuse.protocols import MultimodalModel
from modfuse.validation import check_finite

#: What the sweep evaluates: a model, or its fusion and head on cached features. Any other
#: class that implements the MultimodalModel protocol is evaluated as a FusionModel would be.
SweptModel = FusionModel | FeatureHead


def as_swept_model(model: Any, data: Dataset) -> SweptModel:
    """The model to evaluate: on cached features, its :class:`FeatureHead`.

    Raises:
        TypeError: ``model`` is not a :class:`modfuse.protocols.MultimodalModel`.
    """
    if not isinstance(model, MultimodalModel):
        raise TypeError(
            "robustness_sweep evaluates multimodal models (FusionModel, or any model with "
            "modalities, encoders, views, input_keys, select, encode, fuse and check_labels); "
            f"got {type(model).__name__}"
        )
    if isinstance(data, FeatureDataset) and isinstance(model, FusionModel):
        return FeatureHead(model)
    return cast(SweptModel, model)


def one_placement(models: Mapping[str, SweptModel]) -> SweptModel:
    """The model whose device and dtype every batch of a joint evaluation goes to.

    Raises:
        ValueError: the models live on different devices or in different dtypes.
    """
    where = {n: (model_device(m), model_dtype(m)) for n, m in models.items()}
    if len(set(where.values())) > 1:
        raise ValueError(
            "models evaluated together must share one device and dtype (batches and "
            f"features are shared between them); got {where}"
        )
    return next(iter(models.values()))


def add_views(models: Mapping[str, SweptModel], batch: dict) -> dict:
    """``batch`` with the views' tensors (``fg``, ``bg``) added where it holds only the raw
    keys (``image``, ``mask``) that a model's views make them from: computed once per batch,
    so that every perturbation that moves a view, and the clean pass, see the same views as
    the model's own forward on the raw keys.

    Raises:
        ValueError: the data holds some of a model's views but not all (the clean pass would
            mix the data's with computed ones); models needing them have views of different
            settings (one batch cannot hold both); or a model without views takes a view the
            data lacks (it would read another model's views).
    """
    needing = {}
    for name, m in models.items():
        if m.views is None or not all(k in batch for k in m.views.input_keys):
            continue
        wanted = [k for k in m.views.output_keys if k in m.modalities]
        held = [k for k in wanted if k in batch]
        if held and len(held) < len(wanted):
            raise ValueError(
                f"model {name!r}: the data holds the view(s) {held} but not "
                f"{sorted(set(wanted) - set(held))}; give every view the model takes, or only "
                f"the raw {list(m.views.input_keys)} for the model's views to make them"
            )
        if not held:
            needing[name] = m.views
    if not needing:
        return batch
    settings = {json.dumps(v.config(), sort_keys=True) for v in needing.values()}
    if len(settings) > 1:
        raise ValueError(
            "models evaluated together on raw images (no fg / bg in the data) must share one "
            f"views setting, since the views are computed once per batch; got {sorted(settings)}"
        )
    views = next(iter(needing.values()))
    for name, m in models.items():
        borrowed = [k for k in views.output_keys if k in m.modalities and k not in batch]
        if m.views is None and borrowed:
            raise ValueError(
                f"model {name!r} has no views and takes {borrowed}, which the data does not "
                f"hold (only the raw {list(views.input_keys)}); give it the same views as "
                f"{sorted(needing)}, or data that holds {borrowed}"
            )
    image = views.input_keys[0]
    check_finite(image, batch[image], what="input")  # named as the data holds it
    with torch.no_grad():
        made = views(*(batch[k] for k in views.input_keys))
    return {**batch, **{k: v for k, v in made.items() if k not in batch}}


def takes_targets(model: SweptModel, attack: Any) -> bool:
    """Whether ``model`` takes every key ``attack`` moves (else it sees its inputs untouched)."""
    keys = model.input_keys()
    return all(t in keys for t in attack.targets)


def feature_tags(model: SweptModel, attack: Any, point: str | None) -> dict[str, Any]:
    """Which modalities' features can be shared: untouched ones ('clean') and those perturbed
    the same way for every model (``point``); None where they must be computed afresh."""
    mods = model.modalities
    if attack is None or not takes_targets(model, attack):
        return {m: "clean" for m in mods}
    hit = set(mods) if moves_raw(model, attack) else set(attack.targets)
    return {m: (point if m in hit else "clean") for m in mods}


def moves_raw(model: SweptModel, attack: Any) -> bool:
    """Whether ``attack`` moves the raw keys in front of ``model``'s views (so every view)."""
    return model.views is not None and bool(set(model.views.input_keys) & set(attack.targets))


def inputs_for(model: SweptModel, batch: Mapping[str, Any], attack: Any) -> dict:
    """What ``model`` takes from ``batch`` for ``attack`` (None: the clean pass): its
    modalities, or the raw keys in front of its views where ``attack`` moves those."""
    if model.views is None:
        return model.select(batch)
    raw = attack is not None and takes_targets(model, attack) and moves_raw(model, attack)
    return model.select(batch, raw=raw)


def merge_targets(
    inputs: Mapping[str, Any], adv: Mapping[str, Any], targets: Sequence[str]
) -> dict:
    """``inputs`` with the target keys taken from ``adv`` (dropped where ``adv`` lacks them)."""
    out = {k: v for k, v in inputs.items() if k not in targets}
    out.update({k: adv[k] for k in targets if k in adv})
    return out
