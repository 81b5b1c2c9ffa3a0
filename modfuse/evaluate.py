"""Robustness evaluation: accuracy sweeps under perturbations, with sanity checks.

Work is shared where the answer is the same: within a batch, features of a modality whose
input is untouched are computed once per encoder (identified by a hash of its weights, so
models built from the same frozen encoder share them), a corruption that does not depend on
the model (blur, noise) is applied once for all models, and an FGSM sweep takes one gradient
for all its epsilons. The sanity checks' model probes run on a small subsample of the first
batch and read what the sweep computed there: the attacked items' accuracy, the clean
features and FGSM's clean input gradient (:mod:`modfuse.sweep_sanity`).

Feature shift and modality reliance live in :mod:`modfuse.diagnostics` (re-exported here).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from modfuse import distributed as dist_utils
from modfuse._registry import ATTACKS
from modfuse.data.loader import make_loader
from modfuse.devices import to_model
from modfuse.diagnostics import branch_norm_share, feature_shift, modality_reliance
from modfuse.model import FusionModel
from modfuse.modes import eval_mode
from modfuse.sanity import CHECKS, attack_meta, dedupe
from modfuse.sanity_rows import check_statuses, row_checks
from modfuse.stats import wilson_interval
from modfuse.sweep_inputs import _with_views
from modfuse.sweep_result import SweepResult
from modfuse.sweep_resume import ResumeFile
from modfuse.sweep_sanity import SampleRecord, head, not_run, probe_models
from modfuse.sweep_tally import Tally, collapse_flags
from modfuse.sweep_work import (
    _as_model,
    _clean_batch,
    _count_deferred,
    _FeatureMemo,
    _one_placement,
    _sweep_batch,
)
from modfuse.validation import labels_of

__all__ = [
    "Sweep",
    "SweepResult",
    "branch_norm_share",
    "feature_shift",
    "modality_reliance",
    "robustness_sweep",
    "wilson_interval",
]


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
        repeated = sorted(v for v, n in Counter(map(float, self.strengths)).items() if n > 1)
        if repeated:
            raise ValueError(
                f"sweep {self.name!r}: strengths {list(self.strengths)} repeat {repeated}; "
                "each strength is one column of the results and must appear once"
            )
        if self.attack.strength_param is None and len(self.strengths) > 1:
            raise ValueError(f"{type(self.attack).__name__} has no strength to sweep")
        for v in self.strengths:
            try:  # the attack knows its valid strengths (an SNR in dB may be negative)
                self.attack.check_strength_value(v)
            except (TypeError, ValueError) as err:
                raise ValueError(f"sweep {self.name!r}: strengths: {err}") from None


def robustness_sweep(
    models: Mapping[str, FusionModel],
    data: Dataset,
    perturbations: Sequence[Sweep],
    batch_size: int = 128,
    progress: bool = True,
    workers: int | None = None,
    sanity: bool = True,
    resume_file: str | os.PathLike | None = None,
    sanity_samples: int = 32,
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
    with strength, an iterative attack weaker than a single-step one, vanishing input
    gradients, a stochastic model, random noise stronger than a gradient attack. The failed
    checks are in the result's ``flags``, the status of every check in its ``checks``. The
    model probes run on the first ``sanity_samples`` items of the first batch (a fixed
    subsample, as AutoAttack's checks do; the stochastic check on 8 of them) and read what
    the sweep computed there (:mod:`modfuse.sweep_sanity`), so they add little to a sweep.

    A model with views is evaluated on a dataset of raw ``image`` and ``mask`` too: the
    views are then made once per batch from the raw keys.

    Returns:
        One row per (model, perturbation, strength): ``model``, ``perturbation``, ``attack``,
        ``targets``, ``strength``, ``source``, ``correct``, ``n``, ``accuracy``, ``ci_low``,
        ``ci_high``, and the attack's ``norm``, ``unit`` (of the strength) and ``iterative``
        ("none", "" and False for clean rows). The first rows are the clean accuracies
        (perturbation ``"clean"``).

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
    if (
        isinstance(sanity_samples, bool)
        or not isinstance(sanity_samples, int)
        or sanity_samples < 1
    ):
        raise ValueError(f"sanity_samples must be an integer >= 1, got {sanity_samples!r}")
    names = {s.name for s in perturbations}
    if len(names) != len(perturbations) or "clean" in names:
        raise ValueError("sweep names must be unique and not 'clean'")
    for sweep in perturbations:
        if sweep.source is not None and sweep.source not in models:
            raise KeyError(
                f"sweep {sweep.name!r}: source model {sweep.source!r} not in {sorted(models)}"
            )
    if isinstance(data, Sized) and len(data) == 0:
        raise ValueError(
            "robustness_sweep got an empty dataset (0 items): there is nothing to measure; "
            "check the data's split, selection or categories"
        )
    dist_utils.check_same_weights(models)  # one model per report: every rank the same
    wrapped = {n: _as_model(m, data) for n, m in models.items()}
    placement = _one_placement(wrapped)
    points: list[tuple[str, Sweep | None, float]] = [("clean", None, 0.0)] + [
        (s.name, s, float(v)) for s in perturbations for v in s.strengths
    ]
    tally = Tally(
        [(n, p, v) for p, _, v in points for n in wrapped],
        num_classes=max(m.num_classes for m in wrapped.values()),
    )
    memo = _FeatureMemo(wrapped)
    shard = data
    if dist_utils.is_distributed():
        # Each rank evaluates every world_size-th item (no padding); counts are summed below.
        indices = dist_utils.shard_indices(len(cast(Sized, data)))
        shard = torch.utils.data.Subset(data, indices)
    loader = make_loader(shard, batch_size, workers=workers)
    record: SampleRecord | None = None  # the items the sanity probes run on, and their scores
    progress_file = ResumeFile(resume_file, wrapped, data, perturbations, batch_size)
    done = progress_file.load(tally)
    with eval_mode(*wrapped.values()):
        for index, batch in enumerate(
            tqdm(loader, desc="robustness sweep", disable=not progress or not dist_utils.is_main())
        ):
            if index < done:
                continue  # counted before the interruption
            batch = _with_views(wrapped, to_model(batch, placement))
            labels = labels_of(batch)
            for model in wrapped.values():
                model.check_labels(labels)  # before any work is spent on the batch
            labels = labels.long()
            first = None  # the record, on the batch its subsample comes from
            if sanity and record is None:
                record = first = SampleRecord(*head(batch, labels, sanity_samples))
            tally.count_labels(labels)
            memo.store.clear()
            _clean_batch(wrapped, batch, labels, memo, tally, perturbations)
            for sweep in perturbations:
                _sweep_batch(sweep, wrapped, batch, labels, memo, tally, first)
            _count_deferred(wrapped, batch, labels, memo, tally)
            if first is not None:
                first.keep_features(memo.store)
            progress_file.save(index + 1, tally)
        if sanity:
            probed = (
                probe_models(wrapped, perturbations, record, memo)
                if record is not None
                else ([], not_run("no batch was evaluated in this process"))
            )
    tally.all_reduce()
    total = tally.total
    rows = []
    for p, s, v in points:
        for n in wrapped:
            c = tally.correct[(n, p, v)]
            lo, hi = wilson_interval(c, total)
            meta = attack_meta(s.attack) if s else {"norm": "none", "unit": "", "iterative": False}
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
                    "norm": meta["norm"],
                    "unit": meta["unit"],
                    "iterative": meta["iterative"],
                }
            )
    progress_file.remove()
    result = SweepResult(rows, per_class=tally.per_class_rows(), baselines=tally.baselines())
    if sanity:
        row_flags, coverage = row_checks(rows)
        count_flags, coverage["single_class_predictions"] = collapse_flags(tally, list(wrapped))
        result.flags = [f.as_dict() for f in dedupe(row_flags + count_flags + probed[0])]
        result.checks = check_statuses(result.flags, {**coverage, **probed[1]})
    else:
        result.flags = []
        result.checks = check_statuses([], {c: (False, "sanity=False") for c in CHECKS})
    return result
