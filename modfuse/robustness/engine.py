"""The robustness sweep: accuracy of every model under every perturbation and strength, with
sanity checks, read top to bottom.

:func:`robustness_sweep` checks its arguments, plans the work once
(:mod:`modfuse.robustness.plan`), runs the plan on every batch
(:mod:`modfuse.robustness.batch`, features shared through :mod:`modfuse.robustness.memo`,
counts in :mod:`modfuse.robustness.tally`, saved after each batch by
:mod:`modfuse.robustness.resume`), probes the models on what the first batch recorded
(:mod:`modfuse.robustness.sanity`), and turns the counts into rows
(:mod:`modfuse.robustness.result`).

Work is shared where the answer is the same: within a batch, features of a modality whose
input is untouched are computed once per encoder (identified by a hash of its weights, so
models built from the same frozen encoder share them), a corruption that does not depend on
the model (blur, noise) is applied once for all models, and an FGSM sweep takes one gradient
for all its epsilons. The sanity checks' model probes run on a small subsample of the first
batch and read what the sweep computed there: the attacked items' accuracy, the clean
features and FGSM's clean input gradient (:mod:`modfuse.robustness.sanity.probes`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence, Sized
from typing import cast

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from modfuse import distributed as dist_utils
from modfuse.data.loader import make_loader
from modfuse.devices import to_model
from modfuse.model.fusion_model import FusionModel
from modfuse.modes import eval_mode
from modfuse.robustness.batch import run_batch
from modfuse.robustness.inputs import add_views, as_swept_model, one_placement
from modfuse.robustness.memo import FeatureMemo
from modfuse.robustness.plan import plan_sweep
from modfuse.robustness.result import SweepResult, sweep_rows
from modfuse.robustness.resume import ResumeFile
from modfuse.robustness.sanity.checks import CHECKS, dedupe
from modfuse.robustness.sanity.probes import not_run, probe_models
from modfuse.robustness.sanity.record import SampleRecord, head
from modfuse.robustness.sanity.rows import check_statuses, row_checks
from modfuse.robustness.sweep import Sweep
from modfuse.robustness.tally import Tally, collapse_flags
from modfuse.validation import labels_of

__all__ = ["robustness_sweep"]


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

    With ``sanity=True`` the evaluation is checked (:mod:`modfuse.robustness.sanity`):
    accuracy rising with strength, an iterative attack weaker than a single-step one,
    vanishing input gradients, a stochastic model, random noise stronger than a gradient
    attack. The failed checks are in the result's ``flags``, the status of every check in its
    ``checks``. The model probes run on the first ``sanity_samples`` items of the first batch
    (a fixed subsample, as AutoAttack's checks do; the stochastic check on 8 of them) and read
    what the sweep computed there (:mod:`modfuse.robustness.sanity.probes`), so they add
    little to a sweep.

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
    swept = {n: as_swept_model(m, data) for n, m in models.items()}
    placement = one_placement(swept)
    plan = plan_sweep(swept, perturbations)  # what every batch asks of every model
    points = [("clean", 0.0)] + [(s.name, float(v)) for s in perturbations for v in s.strengths]
    tally = Tally(
        [(n, p, v) for p, v in points for n in swept],
        num_classes=max(m.num_classes for m in swept.values()),
    )
    memo = FeatureMemo(swept)
    shard = data
    if dist_utils.is_distributed():
        # Each rank evaluates every world_size-th item (no padding); counts are summed below.
        shard = torch.utils.data.Subset(data, dist_utils.shard_indices(len(cast(Sized, data))))
    loader = make_loader(shard, batch_size, workers=workers)
    record: SampleRecord | None = None  # the items the sanity probes run on, and their scores
    progress_file = ResumeFile(resume_file, swept, data, perturbations, batch_size)
    done = progress_file.load(tally)
    show = progress and dist_utils.is_main()
    with eval_mode(*swept.values()):
        for index, batch in enumerate(tqdm(loader, desc="robustness sweep", disable=not show)):
            if index < done:
                continue  # counted before the interruption
            batch = add_views(swept, to_model(batch, placement))
            labels = labels_of(batch)
            for model in swept.values():
                model.check_labels(labels)  # before any work is spent on the batch
            labels = labels.long()
            first = None  # the record, on the batch its subsample comes from
            if sanity and record is None:
                record = first = SampleRecord(*head(batch, labels, sanity_samples))
            tally.count_labels(labels)
            run_batch(plan, batch, labels, memo, tally, first)
            progress_file.save(index + 1, tally)
        if sanity:
            probed = (
                probe_models(swept, perturbations, record, memo)
                if record is not None
                else ([], not_run("no batch was evaluated in this process"))
            )
    tally.all_reduce()
    rows = sweep_rows(perturbations, list(swept), tally)
    progress_file.remove()
    result = SweepResult(rows, per_class=tally.per_class_rows(), baselines=tally.baselines())
    if sanity:
        row_flags, coverage = row_checks(rows)
        count_flags, coverage["single_class_predictions"] = collapse_flags(tally, list(swept))
        result.flags = [f.as_dict() for f in dedupe(row_flags + count_flags + probed[0])]
        result.checks = check_statuses(result.flags, {**coverage, **probed[1]})
    else:
        result.flags = []
        result.checks = check_statuses([], {c: (False, "sanity=False") for c in CHECKS})
    return result
