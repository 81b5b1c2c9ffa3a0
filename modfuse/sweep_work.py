"""The shared work of a robustness sweep: which inputs each model takes, which features can be
reused (a modality's features per encoder, input and perturbation point within a batch), and
one sweep's attacks and scores on one batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from modfuse.data.cache import FeatureDataset, module_hash
from modfuse.devices import model_device, model_dtype
from modfuse.model import HeadView

if TYPE_CHECKING:
    from modfuse.evaluate import Sweep


def _as_model(model: torch.nn.Module, data: Dataset) -> torch.nn.Module:
    return HeadView(model) if isinstance(data, FeatureDataset) else model


def _one_placement(models: Mapping[str, torch.nn.Module]) -> torch.nn.Module:
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


class _FeatureMemo:
    """Features per (encoder weights, modality, input tag) within one batch."""

    def __init__(self, models: Mapping[str, torch.nn.Module]) -> None:
        self.hashes = {
            name: {m: module_hash(enc) for m, enc in getattr(model, "encoders", {}).items()}
            for name, model in models.items()
        }
        self.store: dict[tuple, torch.Tensor] = {}
        # model name -> the sweep whose gradient pass gives that model's clean logits
        self.deferred: dict[str, str] = {}

    def logits(
        self, name: str, model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], tags: dict
    ) -> torch.Tensor:
        """Logits of ``model``; a modality whose tag is not None may reuse stored features."""
        if isinstance(model, HeadView):
            return model(inputs)
        prepared = model.prepare(inputs)
        feats = {}
        for m, x in prepared.items():
            tag = tags.get(m)
            key = (self.hashes[name][m], m, tag)
            if tag is not None and key in self.store:
                feats[m] = self.store[key]
                continue
            feats[m] = model.encoders[m](x)
            if tag is not None:
                self.store[key] = feats[m]
        return model.fuse(feats)

    def store_clean(self, name: str, features: Mapping[str, torch.Tensor]) -> None:
        """Keep the clean ``features`` ({modality: (B, D)}) of model ``name``'s encoders."""
        for m, f in features.items():
            if m in self.hashes[name]:
                self.store[(self.hashes[name][m], m, "clean")] = f

    def hint(self, name: str, attack: Any) -> dict[str, Any]:
        """``{"fixed": features}`` of the clean modalities ``attack`` leaves alone, for an
        attack whose ``sweep`` takes them (so it does not encode them again); else ``{}``."""
        if "fixed" not in inspect.signature(attack.sweep).parameters:
            return {}
        fixed = {
            m: f
            for (h, m, tag), f in self.store.items()
            if tag == "clean" and m not in attack.targets and self.hashes[name].get(m) == h
        }
        return {"fixed": fixed} if fixed else {}


def _gives_clean(sweep: Sweep, model: torch.nn.Module) -> bool:
    """Whether ``sweep``'s white-box attack on ``model`` passes through the clean input with
    gradients anyway (FGSM), so its logits there are the clean logits."""
    attack = sweep.attack
    return (
        sweep.source is None
        and attack.depends_on_model
        and not isinstance(model, HeadView)
        and bool(getattr(model, "encoders", None))
        and _targets_of(model, attack)
        and "clean_out" in inspect.signature(attack.sweep).parameters
    )


def _clean_batch(
    models: Mapping[str, torch.nn.Module],
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: _FeatureMemo,
    correct: dict,
    sweeps: Sequence[Sweep],
) -> None:
    """Count every model's clean answers on one batch, or leave that to the first sweep whose
    gradient pass runs the clean input anyway (one forward pass per batch and model less);
    then encode here only the modalities that sweep leaves untouched, for it to reuse."""
    memo.deferred.clear()
    for n, model in models.items():
        lead = next((s for s in sweeps if _gives_clean(s, model)), None)
        with torch.no_grad():
            inputs = _inputs_for(model, batch, None)
            if lead is None:
                logits = memo.logits(n, model, inputs, _tags(model, None, None))
                correct[(n, "clean", 0.0)] += int((logits.argmax(1) == labels).sum())
                continue
            memo.deferred[n] = lead.name
            tags = _tags(model, lead.attack, None)  # 'clean': a modality the attack leaves
            untouched = {k: v for k, v in inputs.items() if tags.get(k) == "clean"}
            if untouched:
                memo.store_clean(n, _encode_missing(memo, n, model, untouched))


def _encode_missing(
    memo: _FeatureMemo, name: str, model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Clean features of ``inputs``' modalities, taken from the memo where it has them."""
    out = {}
    for m, x in model.prepare(inputs).items():
        key = (memo.hashes[name][m], m, "clean")
        out[m] = memo.store[key] if key in memo.store else model.encoders[m](x)
    return out


def _targets_of(model: torch.nn.Module, attack: Any) -> bool:
    keys = model.input_keys() if hasattr(model, "input_keys") else []
    return all(t in keys for t in attack.targets)


def _tags(model: torch.nn.Module, attack: Any, point: str | None) -> dict[str, Any]:
    """Which modalities' features can be shared: untouched ones ('clean') and those perturbed
    the same way for every model (``point``); None where they must be computed afresh."""
    mods = getattr(model, "modalities", [])
    if attack is None or not _targets_of(model, attack):
        return {m: "clean" for m in mods}
    raw = "image" in attack.targets or "mask" in attack.targets
    hit = set(mods) if raw else set(attack.targets)
    return {m: (point if m in hit else "clean") for m in mods}


def _has_views(model: torch.nn.Module) -> bool:
    return getattr(model, "views", None) is not None


def _inputs_for(model: torch.nn.Module, batch: Mapping[str, Any], attack: Any) -> dict:
    raw = attack is not None and _targets_of(model, attack) and "image" in attack.targets
    if _has_views(model):
        return model.select(batch, raw=raw)
    return model.select(batch)


def _merge(inputs: Mapping[str, Any], adv: Mapping[str, Any], targets: Sequence[str]) -> dict:
    """``inputs`` with the target keys taken from ``adv`` (dropped where ``adv`` lacks them)."""
    out = {k: v for k, v in inputs.items() if k not in targets}
    out.update({k: adv[k] for k in targets if k in adv})
    return out


def _count_clean(
    name: str,
    model: torch.nn.Module,
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: _FeatureMemo,
    correct: dict,
    clean: Mapping[str, Any],
) -> None:
    """Count a deferred model's clean answers from its attack's gradient pass (``clean``),
    and keep the clean features it computed for the sweeps that follow."""
    if "logits" in clean:
        memo.store_clean(name, clean["features"])
        logits = clean["logits"]
    else:  # the attack made no pass at the clean input after all
        with torch.no_grad():
            inputs = _inputs_for(model, batch, None)
            logits = memo.logits(name, model, inputs, _tags(model, None, None))
    correct[(name, "clean", 0.0)] += int((logits.argmax(1) == labels).sum())


def _count_deferred(
    models: Mapping[str, torch.nn.Module],
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: _FeatureMemo,
    correct: dict,
) -> None:
    """Count the clean answers of any model whose deferred sweep gave no clean pass."""
    for n in list(memo.deferred):
        _count_clean(n, models[n], batch, labels, memo, correct, {})
    memo.deferred.clear()


def _sweep_batch(
    sweep: Sweep,
    models: Mapping[str, torch.nn.Module],
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: _FeatureMemo,
    correct: dict,
    scored: dict | None = None,
    keep: int | None = None,
) -> None:
    """Count the correct answers of every model at every strength of ``sweep`` on one batch;
    with ``keep``, also store in ``scored`` which of the first ``keep`` items each model got
    right at the largest strength (what the sanity probes compare random noise with)."""
    attack = sweep.attack
    strengths = [float(v) for v in sweep.strengths]
    shared: list[dict] | None = None  # a model-independent corruption, applied once
    if not attack.depends_on_model and sweep.source is None:
        holder = next((m for m in models.values() if _targets_of(m, attack)), None)
        if holder is not None:
            shared = attack.sweep(holder, _inputs_for(holder, batch, attack), labels, strengths)
    for n, model in models.items():
        inputs = _inputs_for(model, batch, attack)
        if not _targets_of(model, attack):
            advs = [inputs] * len(strengths)
        elif shared is not None:
            advs = [_merge(inputs, a, attack.targets) for a in shared]
        elif sweep.source is not None:
            source = models[sweep.source]
            src_adv = attack.sweep(source, _inputs_for(source, batch, attack), labels, strengths)
            advs = [_merge(inputs, a, attack.targets) for a in src_adv]
        else:
            hint = memo.hint(n, attack)
            clean: dict = {}
            if memo.deferred.get(n) == sweep.name:
                hint["clean_out"] = clean
            advs = attack.sweep(model, inputs, labels, strengths, **hint)
            if memo.deferred.pop(n, None) == sweep.name:
                _count_clean(n, model, batch, labels, memo, correct, clean)
        for v, adv in zip(strengths, advs):
            point = f"{sweep.name}@{v}" if (shared is not None or sweep.source) else None
            with torch.no_grad():
                logits = memo.logits(n, model, adv, _tags(model, attack, point))
            right = logits.argmax(1) == labels
            correct[(n, sweep.name, v)] += int(right.sum())
            if keep is not None and scored is not None and v == max(strengths):
                scored[(n, sweep.name)] = right[:keep]
