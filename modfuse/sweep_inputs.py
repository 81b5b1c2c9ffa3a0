"""Which inputs each model of a robustness sweep takes from a batch: the modality tensors or
the raw keys in front of its views, which modalities a perturbation moves (and so which
features can be shared), and the views made from the raw keys when a batch lacks them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from modfuse.sweep_work import SweptModel


def _with_views(models: Mapping[str, SweptModel], batch: dict) -> dict:
    """``batch`` with the views' tensors (``fg``, ``bg``) added where it holds only the raw
    keys (``image``, ``mask``) that a model's views make them from: computed once per batch,
    so that every perturbation that moves a view, and the clean pass, see the same views as
    the model's own forward on the raw keys.

    Raises:
        ValueError: models needing them have views of different settings (one batch cannot
            hold both).
    """
    needing = [
        m.views
        for m in models.values()
        if m.views is not None
        and all(k in batch for k in m.views.input_keys)
        and any(k not in batch for k in m.views.output_keys if k in m.modalities)
    ]
    if not needing:
        return batch
    settings = {json.dumps(v.config(), sort_keys=True) for v in needing}
    if len(settings) > 1:
        raise ValueError(
            "models evaluated together on raw images (no fg / bg in the data) must share one "
            f"views setting, since the views are computed once per batch; got {sorted(settings)}"
        )
    views = needing[0]
    with torch.no_grad():
        made = views(*(batch[k] for k in views.input_keys))
    return {**batch, **{k: v for k, v in made.items() if k not in batch}}


def _targets_of(model: SweptModel, attack: Any) -> bool:
    keys = model.input_keys()
    return all(t in keys for t in attack.targets)


def _tags(model: SweptModel, attack: Any, point: str | None) -> dict[str, Any]:
    """Which modalities' features can be shared: untouched ones ('clean') and those perturbed
    the same way for every model (``point``); None where they must be computed afresh."""
    mods = model.modalities
    if attack is None or not _targets_of(model, attack):
        return {m: "clean" for m in mods}
    hit = set(mods) if _raw_targets(model, attack) else set(attack.targets)
    return {m: (point if m in hit else "clean") for m in mods}


def _raw_targets(model: SweptModel, attack: Any) -> bool:
    """Whether ``attack`` moves the raw keys in front of ``model``'s views (so every view)."""
    return model.views is not None and bool(set(model.views.input_keys) & set(attack.targets))


def _inputs_for(model: SweptModel, batch: Mapping[str, Any], attack: Any) -> dict:
    if model.views is None:
        return model.select(batch)
    raw = attack is not None and _targets_of(model, attack) and _raw_targets(model, attack)
    return model.select(batch, raw=raw)


def _merge(inputs: Mapping[str, Any], adv: Mapping[str, Any], targets: Sequence[str]) -> dict:
    """``inputs`` with the target keys taken from ``adv`` (dropped where ``adv`` lacks them)."""
    out = {k: v for k, v in inputs.items() if k not in targets}
    out.update({k: adv[k] for k in targets if k in adv})
    return out
