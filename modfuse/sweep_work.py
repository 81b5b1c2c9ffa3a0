"""The shared work of a robustness sweep: which inputs each model takes, which features can be
reused (a modality's features per encoder, input and perturbation point within a batch), and
one sweep's attacks and scores on one batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch.utils.data import Dataset

from modfuse.data.cache import FeatureDataset
from modfuse.data.hashing import feature_identity
from modfuse.devices import model_device, model_dtype
from modfuse.feature_head import FeatureHead
from modfuse.model import FusionModel
from modfuse.protocols import MultimodalModel
from modfuse.sweep_inputs import _inputs_for, _merge, _tags, _targets_of
from modfuse.sweep_tally import Tally

if TYPE_CHECKING:
    from modfuse.evaluate import Sweep
    from modfuse.sweep_sanity import SampleRecord


#: What the sweep evaluates: a model, or its fusion and head on cached features. Any other
#: class that implements the MultimodalModel protocol is evaluated as a FusionModel would be.
SweptModel = FusionModel | FeatureHead


def _as_model(model: Any, data: Dataset) -> SweptModel:
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


def _one_placement(models: Mapping[str, SweptModel]) -> SweptModel:
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
    """Features per (encoder identity, modality, input tag) within one batch.

    Two models share a modality's features only when everything that computes them is the
    same (:func:`modfuse.data.hashing.feature_identity`: the encoder's spec, structure, every
    parameter and every buffer, persistent or not, and the views): same weights with another
    normalization (a non-persistent buffer) are other features.
    """

    def __init__(self, models: Mapping[str, SweptModel]) -> None:
        self.hashes = {
            name: {m: feature_identity(model, m) for m in model.encoders}
            for name, model in models.items()
        }
        self.store: dict[tuple, torch.Tensor] = {}
        # model name -> the sweep whose gradient pass gives that model's clean logits
        self.deferred: dict[str, str] = {}

    def logits(
        self, name: str, model: SweptModel, inputs: Mapping[str, torch.Tensor], tags: dict
    ) -> torch.Tensor:
        """Logits of ``model``; a modality whose tag is not None may reuse stored features."""
        if isinstance(model, FeatureHead):
            return model(inputs)
        return model.fuse(self.features(name, model, inputs, tags))

    def features(
        self, name: str, model: FusionModel, inputs: Mapping[str, torch.Tensor], tags: dict
    ) -> dict[str, torch.Tensor]:
        """``{modality: (B, D)}`` of ``inputs``: a modality whose tag is not None is taken
        from the store when there, else encoded and stored."""
        feats = {}
        for m, x in model.prepare(inputs).items():
            tag = tags.get(m)
            key = (self.hashes[name][m], m, tag)
            if tag is not None and key in self.store:
                feats[m] = self.store[key]
                continue
            feats[m] = model.encoders[m](x)
            if tag is not None:
                self.store[key] = feats[m]
        return feats

    def store_clean(self, name: str, features: Mapping[str, torch.Tensor]) -> None:
        """Keep the clean ``features`` ({modality: (B, D)}) of model ``name``'s encoders."""
        for m, f in features.items():
            if m in self.hashes[name]:
                self.store[(self.hashes[name][m], m, "clean")] = f

    def hint(self, name: str, attack: Any) -> dict[str, Any]:
        """``{"fixed": features}`` of the clean modalities ``attack`` leaves alone, for an
        attack whose ``sweep`` takes them (so it does not encode them again); else ``{}``."""
        if not _takes(attack, "fixed"):
            return {}
        fixed = {
            m: f
            for (h, m, tag), f in self.store.items()
            if tag == "clean" and m not in attack.targets and self.hashes[name].get(m) == h
        }
        return {"fixed": fixed} if fixed else {}


def _gives_clean(sweep: Sweep, model: SweptModel) -> bool:
    """Whether ``sweep``'s white-box attack on ``model`` passes through the clean input with
    gradients anyway (FGSM), so its logits there are the clean logits."""
    attack = sweep.attack
    return (
        sweep.source is None
        and attack.depends_on_model
        and bool(model.encoders)  # not a FeatureHead: its inputs are already features
        and _targets_of(model, attack)
        and _takes(attack, "clean_out")
    )


def _takes(attack: Any, argument: str) -> bool:
    """Whether ``attack.sweep`` takes ``argument`` (an optional hint of work to share)."""
    return argument in inspect.signature(attack.sweep).parameters


def _clean_batch(
    models: Mapping[str, SweptModel],
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: _FeatureMemo,
    correct: Tally,
    sweeps: Sequence[Sweep],
) -> None:
    """Count every model's clean answers on one batch, or leave that to the first sweep whose
    gradient pass runs the clean input anyway (one forward pass per batch and model less);
    then encode here only the modalities that sweep leaves untouched, for it to reuse."""
    memo.deferred.clear()
    for n, model in models.items():
        lead = next((s for s in sweeps if _gives_clean(s, model)), None)
        if lead is None or not isinstance(model, FusionModel):
            _count_clean(n, model, batch, labels, memo, correct, {})
            continue
        memo.deferred[n] = lead.name
        tags = _tags(model, lead.attack, None)  # 'clean': a modality the attack leaves
        inputs = _inputs_for(model, batch, None)
        untouched = {k: v for k, v in inputs.items() if tags.get(k) == "clean"}
        if untouched:
            with torch.no_grad():
                memo.features(n, model, untouched, tags)  # stored for the attack to reuse


def _count_clean(
    name: str,
    model: SweptModel,
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: _FeatureMemo,
    correct: Tally,
    clean: Mapping[str, Any],
) -> None:
    """Count a model's clean answers: from an attack's gradient pass when ``clean`` holds its
    logits (keeping the clean features it computed for the sweeps that follow), else from a
    clean forward pass."""
    if "logits" in clean:
        memo.store_clean(name, clean["features"])
        logits = clean["logits"]
    else:  # no attack's pass at the clean input: one forward pass here
        with torch.no_grad():
            inputs = _inputs_for(model, batch, None)
            logits = memo.logits(name, model, inputs, _tags(model, None, None))
    correct.add((name, "clean", 0.0), labels, logits.argmax(1))


def _count_deferred(
    models: Mapping[str, SweptModel],
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: _FeatureMemo,
    correct: Tally,
) -> None:
    """Count the clean answers of any model whose deferred sweep gave no clean pass."""
    for n in list(memo.deferred):
        _count_clean(n, models[n], batch, labels, memo, correct, {})
    memo.deferred.clear()


def _sweep_batch(
    sweep: Sweep,
    models: Mapping[str, SweptModel],
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: _FeatureMemo,
    correct: Tally,
    record: SampleRecord | None = None,
) -> None:
    """Count the correct answers of every model at every strength of ``sweep`` on one batch;
    with a ``record`` (on the batch the sanity probes' subsample comes from), also keep there
    which subsample items each model got right at the largest strength (what the probes
    compare random noise with) and the clean input gradient of the attack's gradient pass."""
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
            deferred = memo.deferred.get(n) == sweep.name
            if deferred or (record is not None and _takes(attack, "clean_out")):
                hint["clean_out"] = clean
            advs = attack.sweep(model, inputs, labels, strengths, **hint)
            if record is not None:
                record.note_gradient(n, attack, inputs, clean)
            if deferred:
                del memo.deferred[n]
                _count_clean(n, model, batch, labels, memo, correct, clean)
        for v, adv in zip(strengths, advs):
            point = f"{sweep.name}@{v}" if (shared is not None or sweep.source) else None
            with torch.no_grad():
                logits = memo.logits(n, model, adv, _tags(model, attack, point))
            right = correct.add((n, sweep.name, v), labels, logits.argmax(1))
            if record is not None and v == max(strengths):
                record.note_right(n, sweep.name, right)
