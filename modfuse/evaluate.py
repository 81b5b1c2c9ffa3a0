"""Robustness evaluation: accuracy sweeps under perturbations, feature shift, modality reliance.

Work is shared where the answer is the same: within a batch, features of a modality whose
input is untouched are computed once per encoder (identified by a hash of its weights, so
models built from the same frozen encoder share them), a corruption that does not depend on
the model (blur, noise) is applied once for all models, and an FGSM sweep takes one gradient
for all its epsilons.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from modfuse import distributed as dist_utils
from modfuse._registry import ATTACKS
from modfuse.attacks.checks import check_strength
from modfuse.attacks.keys import perturbation_key
from modfuse.checkpoint import atomic_write_json
from modfuse.data.cache import FeatureDataset, module_hash
from modfuse.data.loader import make_loader
from modfuse.devices import model_device, model_dtype, to_model
from modfuse.model import FusionModel, HeadView
from modfuse.modes import eval_mode


@dataclass
class Sweep:
    """One perturbation swept over strengths.

    Args:
        name: Its label in reports, e.g. ``"fg_blur"``.
        attack: An attack or an attack spec; its strength (eps, sigma, std) is overridden.
        strengths: The values to sweep.
        source: Name of another model to compute the perturbation on (transfer); None means
            white-box against each evaluated model itself.

    Examples:
        >>> from modfuse.attacks import GaussianBlur
        >>> Sweep("fg_blur", GaussianBlur(targets=("fg",)), [1, 2, 4]).strengths
        [1, 2, 4]
    """

    name: str
    attack: Any
    strengths: Sequence[float] = field(default_factory=list)
    source: str | None = None

    def __post_init__(self) -> None:
        self.attack = ATTACKS.create(self.attack)
        if not self.strengths:
            raise ValueError(f"sweep {self.name!r} has no strengths")
        if self.attack.strength_param is None and len(self.strengths) > 1:
            raise ValueError(f"{type(self.attack).__name__} has no strength to sweep")
        what = f"sweep {self.name!r}: strengths ({self.attack.strength_param or 'none'})"
        for v in self.strengths:
            check_strength(v, what, self.attack.strength_max)


class SweepResult(list):
    """The rows of a robustness sweep (a list of dicts), with its sanity ``flags``."""

    flags: list[dict[str, str]]


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy ``correct / n``.

    Examples:
        >>> lo, hi = wilson_interval(90, 100)
        >>> round(lo, 3), round(hi, 3)
        (0.826, 0.945)
    """
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


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


def robustness_sweep(
    models: Mapping[str, FusionModel],
    data: Dataset,
    perturbations: Sequence[Sweep],
    batch_size: int = 128,
    progress: bool = True,
    workers: int | None = None,
    sanity: bool = True,
    resume_file: str | os.PathLike | None = None,
) -> SweepResult:
    """Accuracy of every model under every perturbation and strength, with 95% intervals.

    White-box attacks are computed against each evaluated model itself, unless the sweep names
    a ``source`` model (transfer). A model that does not take a perturbation's target (a
    background-only model under a foreground attack) is evaluated on its untouched inputs.
    On a :class:`modfuse.data.FeatureDataset` the models are evaluated on features
    (perturbations then act in feature space). Under torchrun the items are sharded across
    ranks and the counts summed, so every rank returns the single-process rows exactly.

    With ``resume_file``, the running counts are saved there (atomically) after every batch;
    a sweep killed midway and started again with the same models, data, perturbations and
    batch size continues where it stopped and ends with the same rows (for deterministic or
    seeded perturbations). The file is removed when the sweep completes.

    With ``sanity=True`` the evaluation is checked (:mod:`modfuse.sanity`): accuracy rising
    with strength, PGD weaker than FGSM, vanishing input gradients, a stochastic model, random
    noise stronger than a gradient attack. The flags are in the result's ``flags``.

    Returns:
        One row per (model, perturbation, strength): ``model``, ``perturbation``, ``attack``,
        ``targets``, ``strength``, ``source``, ``correct``, ``n``, ``accuracy``, ``ci_low``,
        ``ci_high``. The first rows are the clean accuracies (perturbation ``"clean"``).

    Examples:
        >>> from modfuse.attacks import GaussianNoise
        >>> from modfuse.data import FeatureDataset
        >>> data = FeatureDataset({"a": torch.randn(20, 128)}, torch.zeros(20, dtype=torch.long))
        >>> model = FusionModel({"a": {"name": "mlp", "in_dim": 3}}, num_classes=2)
        >>> rows = robustness_sweep({"m": model}, data,
        ...     [Sweep("noise", GaussianNoise(targets=("a",), seed=0), [0.1, 1.0])], progress=False)
        >>> [(r["perturbation"], r["strength"], r["n"]) for r in rows]
        [('clean', 0.0, 20), ('noise', 0.1, 20), ('noise', 1.0, 20)]
    """
    if not models:
        raise ValueError("no models to evaluate")
    names = {s.name for s in perturbations}
    if len(names) != len(perturbations) or "clean" in names:
        raise ValueError("sweep names must be unique and not 'clean'")
    for s in perturbations:
        if s.source is not None and s.source not in models:
            raise KeyError(f"sweep {s.name!r}: source model {s.source!r} not in {sorted(models)}")
    dist_utils.check_same_weights(models)  # one model per report: every rank the same
    wrapped = {n: _as_model(m, data) for n, m in models.items()}
    placement = _one_placement(wrapped)
    points = [("clean", None, 0.0)] + [
        (s.name, s, float(v)) for s in perturbations for v in s.strengths
    ]
    correct = {(n, p, v): 0 for n in wrapped for p, _, v in points}
    total = 0
    memo = _FeatureMemo(wrapped)
    shard = data
    if dist_utils.is_distributed():
        # Each rank evaluates every world_size-th item (no padding); counts are summed below.
        shard = torch.utils.data.Subset(data, dist_utils.shard_indices(len(data)))
    loader = make_loader(shard, batch_size, workers=workers)
    first = None
    progress_file = _ResumeFile(resume_file, wrapped, data, perturbations, batch_size)
    done, total = progress_file.load(correct)
    with eval_mode(*wrapped.values()):
        for index, batch in enumerate(
            tqdm(loader, desc="robustness sweep", disable=not progress or not dist_utils.is_main())
        ):
            if index < done:
                continue  # counted before the interruption
            batch = to_model(batch, placement)
            labels = torch.as_tensor(batch["label"])
            for model in wrapped.values():
                if hasattr(model, "check_labels"):
                    model.check_labels(labels)  # before any work is spent on the batch
            labels = labels.long()
            first = first or (batch, labels)
            total += len(labels)
            memo.store.clear()
            for n, model in wrapped.items():
                with torch.no_grad():
                    inputs = _inputs_for(model, batch, None)
                    logits = memo.logits(n, model, inputs, _tags(model, None, None))
                correct[(n, "clean", 0.0)] += int((logits.argmax(1) == labels).sum())
            for s in perturbations:
                _sweep_batch(s, wrapped, batch, labels, memo, correct)
            progress_file.save(index + 1, correct, total)
        flags = _sanity(wrapped, perturbations, first) if sanity and first else []
    keys = list(correct)
    summed = dist_utils.all_reduce_sum(torch.tensor([correct[k] for k in keys] + [total]))
    correct = dict(zip(keys, summed[:-1].tolist()))
    total = int(summed[-1])
    rows = []
    for p, s, v in points:
        for n in wrapped:
            c = correct[(n, p, v)]
            lo, hi = wilson_interval(c, total)
            rows.append(
                {
                    "model": n,
                    "perturbation": p,
                    "attack": type(s.attack).__name__ if s else "none",
                    "targets": "+".join(s.attack.targets) if s else "",
                    "strength": v,
                    "source": (s.source or "") if s else "",
                    "correct": c,
                    "n": total,
                    "accuracy": c / total if total else float("nan"),
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
    progress_file.remove()
    result = SweepResult(rows)
    if sanity:
        from modfuse.sanity import check_rows, dedupe

        result.flags = [f.as_dict() for f in dedupe(check_rows(rows) + flags)]
    else:
        result.flags = []
    return result


def _sanity(models: Mapping[str, torch.nn.Module], sweeps: Sequence[Sweep], first: tuple) -> list:
    """Probe each model on the first batch (see :func:`modfuse.sanity.check_model`)."""
    from modfuse.sanity import check_model

    batch, labels = first
    flags = []
    for n, model in models.items():
        flags += check_model(n, model, _inputs_for(model, batch, None), labels)
        for s in sweeps:
            if s.attack.uses_gradients and s.source is None and _targets_of(model, s.attack):
                inputs = _inputs_for(model, batch, s.attack)
                flags += check_model(
                    n, model, inputs, labels, [(s.attack, max(s.strengths))], stochastic=False
                )
    return flags


class _ResumeFile:
    """Running counts of a sweep, saved after each batch and keyed by what the sweep is."""

    def __init__(
        self,
        path: Any,
        models: Mapping[str, Any],
        data: Dataset,
        sweeps: Sequence[Sweep],
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
            "models": {n: module_hash(m) for n, m in models.items()},
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

    def load(self, correct: dict) -> tuple[int, int]:
        """Fill ``correct`` from a matching file; returns (batches done, items counted)."""
        if self.path is None or not self.path.is_file():
            return 0, 0
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return 0, 0  # unreadable: start over
        if saved.get("key") != self.key:
            return 0, 0  # another sweep's file: start over (it is overwritten)
        for (n, p, v), c in saved["correct"]:
            correct[(n, p, float(v))] = c
        return int(saved["batches"]), int(saved["total"])

    def save(self, batches: int, correct: dict, total: int) -> None:
        if self.path is not None:
            atomic_write_json(
                self.path,
                {
                    "key": self.key,
                    "batches": batches,
                    "total": total,
                    "correct": [[list(k), c] for k, c in correct.items()],
                },
            )

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


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


def _sweep_batch(
    sweep: Sweep,
    models: Mapping[str, torch.nn.Module],
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: _FeatureMemo,
    correct: dict,
) -> None:
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
            advs = attack.sweep(model, inputs, labels, strengths)
        for v, adv in zip(strengths, advs):
            point = f"{sweep.name}@{v}" if (shared is not None or sweep.source) else None
            with torch.no_grad():
                logits = memo.logits(n, model, adv, _tags(model, attack, point))
            correct[(n, sweep.name, v)] += int((logits.argmax(1) == labels).sum())


def _features(
    model: torch.nn.Module, data: Dataset, perturbation: Any, batch_size: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """Clean and perturbed features of every item, and the labels."""
    model = _as_model(model, data)
    clean: dict[str, list[torch.Tensor]] = {}
    pert: dict[str, list[torch.Tensor]] = {}
    labels = []
    with eval_mode(model):
        for batch in make_loader(data, batch_size):
            batch = to_model(batch, model)
            y = torch.as_tensor(batch["label"]).long()
            inputs = _inputs_for(model, batch, perturbation)
            adv = perturbation(model, inputs, y) if perturbation is not None else inputs
            with torch.no_grad():
                for store, x in ((clean, inputs), (pert, adv)):
                    for m, f in model.encode(x).items():
                        store.setdefault(m, []).append(f)
            labels.append(y)
    cat = {m: torch.cat(v) for m, v in clean.items()}
    return cat, {m: torch.cat(v) for m, v in pert.items()}, torch.cat(labels)


def feature_shift(
    model: FusionModel, data: Dataset, perturbation: Any, batch_size: int = 128
) -> dict[str, dict[str, float]]:
    """How far a perturbation moves each modality's features.

    Returns:
        Per modality: ``relative_l2`` = mean of ``||f' - f|| / ||f||`` and
        ``cosine_distance`` = mean of ``1 - cos(f, f')`` over the data (0 for a modality the
        perturbation leaves alone).

    Examples:
        >>> from modfuse.attacks import GaussianNoise
        >>> from modfuse.data import FeatureDataset
        >>> data = FeatureDataset({"a": torch.randn(8, 4), "b": torch.randn(8, 4)},
        ...                       torch.zeros(8, dtype=torch.long))
        >>> mlp = {"name": "mlp", "in_dim": 4}
        >>> model = FusionModel({"a": mlp, "b": mlp}, num_classes=2)
        >>> shift = feature_shift(model, data, GaussianNoise(std=1.0, targets=("a",), seed=0))
        >>> shift["a"]["relative_l2"] > 0.5, shift["b"]["relative_l2"]
        (True, 0.0)
    """
    perturbation = ATTACKS.create(perturbation)
    clean, pert, _ = _features(model, data, perturbation, batch_size)
    out = {}
    for m in clean:
        f, g = clean[m].float(), pert[m].float()
        rel = (g - f).norm(dim=1) / f.norm(dim=1).clamp_min(1e-12)
        cos = torch.nn.functional.cosine_similarity(f, g, dim=1, eps=1e-12)
        out[m] = {"relative_l2": float(rel.mean()), "cosine_distance": float((1 - cos).mean())}
    return out


def branch_norm_share(model: FusionModel) -> dict[str, float]:
    """Each modality's share of the fusion branches' total L2 norm (sums to 1)."""
    norms = {
        m: float(
            torch.sqrt(sum(p.detach().pow(2).sum() for p in model.fusion.branch(m).parameters()))
        )
        for m in model.modalities
    }
    total = sum(norms.values()) or 1.0
    return {m: v / total for m, v in norms.items()}


def modality_reliance(
    model: FusionModel, data: Dataset, batch_size: int = 128
) -> dict[str, dict[str, float]]:
    """How much the model leans on each modality.

    Returns:
        Per modality: ``accuracy_drop`` (clean accuracy minus the accuracy when that
        modality's features are replaced by their mean over the data) and ``norm_share``
        (its fusion branch's share of the branches' L2 norm), plus ``clean_accuracy``.

    Examples:
        >>> from modfuse.data import FeatureDataset
        >>> x = torch.randn(64, 4); y = (x[:, 0] > 0).long()
        >>> data = FeatureDataset({"a": torch.cat([x, torch.zeros(64, 124)], 1),
        ...                        "b": torch.randn(64, 128)}, y)
        >>> mlp = {"name": "mlp", "in_dim": 4}
        >>> model = FusionModel({"a": mlp, "b": mlp}, num_classes=2)
        >>> with torch.no_grad():
        ...     _ = model.fusion.branch("a").weight.zero_()
        ...     _ = model.fusion.branch("b").weight.zero_()
        ...     model.fusion.branch("a").weight[1, 0] = 5.0
        >>> r = modality_reliance(model, data)
        >>> r["a"]["accuracy_drop"] > 0.3, r["b"]["accuracy_drop"], r["a"]["norm_share"]
        (True, 0.0, 1.0)
    """
    feats, _, labels = _features(model, data, None, batch_size)
    with eval_mode(model):
        with torch.no_grad():
            base = (model.fuse(feats).argmax(1) == labels).float().mean().item()
            shares = branch_norm_share(model)
            out: dict[str, dict[str, float]] = {}
            for m in model.modalities:
                replaced = {**feats, m: feats[m].mean(0, keepdim=True).expand_as(feats[m])}
                acc = (model.fuse(replaced).argmax(1) == labels).float().mean().item()
                out[m] = {
                    "accuracy_drop": base - acc,
                    "norm_share": shares[m],
                    "clean_accuracy": base,
                }
    return out
