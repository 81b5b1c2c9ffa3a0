"""One batch of a robustness sweep, carried out as its plan says: the clean answers, then each
sweep's perturbed inputs and answers, with features shared through the memo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from modfuse.model.fusion_model import FusionModel
from modfuse.robustness.inputs import SweptModel, feature_tags, inputs_for, merge_targets
from modfuse.robustness.memo import FeatureMemo
from modfuse.robustness.plan import ModelStep, SweepPlan, SweepStep
from modfuse.robustness.sanity.record import SampleRecord
from modfuse.robustness.tally import Tally


def run_batch(
    plan: SweepPlan,
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: FeatureMemo,
    tally: Tally,
    record: SampleRecord | None = None,
) -> None:
    """Count every model's answers on one batch, clean and at every point of every sweep.

    Args:
        plan: What each sweep asks of each model (:func:`modfuse.robustness.plan.plan_sweep`).
        batch: The batch, on the models' device, with the views made.
        labels: Its labels ``(B,)``.
        memo: The sweep's feature memo (cleared here: features are shared within a batch).
        tally: The counts, added to.
        record: On the batch the sanity probes' subsample comes from, what they will read.
    """
    memo.store.clear()
    clean_pass(plan, batch, labels, memo, tally)
    for step in plan.steps:
        run_step(plan, step, batch, labels, memo, tally, record)
    if record is not None:
        record.keep_features(memo.store)


def clean_pass(
    plan: SweepPlan,
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: FeatureMemo,
    tally: Tally,
) -> None:
    """Count the clean answers of every model whose clean answers no sweep gives; for the
    others, encode only the modalities that their clean-giving sweep leaves untouched, for
    its attack to reuse."""
    for n, model in plan.models.items():
        if plan.clean_from[n] is None or not isinstance(model, FusionModel):
            count_clean(n, model, batch, labels, memo, tally, {})
            continue
        tags = plan.lead_tags(n)
        inputs = inputs_for(model, batch, None)
        untouched = {k: v for k, v in inputs.items() if tags.get(k) == "clean"}
        if untouched:
            with torch.no_grad():
                memo.features(n, model, untouched, tags)  # stored for the attack to reuse


def run_step(
    plan: SweepPlan,
    step: SweepStep,
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: FeatureMemo,
    tally: Tally,
    record: SampleRecord | None,
) -> None:
    """Count the answers of every model at every strength of one sweep; with a ``record``,
    also keep which subsample items each model got right at the largest strength (what the
    probes compare random noise with) and the clean input gradient of the attack's pass."""
    sweep, strengths = step.sweep, step.strengths
    attack = sweep.attack
    shared: list[dict] | None = None  # perturbed once, on step.shared_on, for every model
    if any(m.role == "shared" for m in step.models):
        holder = plan.models[step.shared_on or ""]
        shared = attack.sweep(holder, inputs_for(holder, batch, attack), labels, strengths)
    for ms in step.models:
        model = plan.models[ms.name]
        inputs = inputs_for(model, batch, attack)
        if ms.role == "untouched":
            advs = [inputs] * len(strengths)
        elif ms.role == "shared" and shared is not None:
            advs = [merge_targets(inputs, a, attack.targets) for a in shared]
        else:
            advs = white_box(ms, model, inputs, batch, labels, step, memo, tally, record)
        for v, adv, tags in zip(strengths, advs, ms.tags):
            with torch.no_grad():
                logits = memo.logits(ms.name, model, adv, tags)
            right = tally.add((ms.name, sweep.name, v), labels, logits.argmax(1))
            if record is not None and v == max(strengths):
                record.note_right(ms.name, sweep.name, right)


def white_box(
    ms: ModelStep,
    model: SweptModel,
    inputs: dict,
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    step: SweepStep,
    memo: FeatureMemo,
    tally: Tally,
    record: SampleRecord | None,
) -> list[dict]:
    """The attack of ``step`` against ``model`` itself at every strength, given the clean
    features it may reuse; where its pass at the clean input gives the model's clean
    answers, they are counted here."""
    attack = step.sweep.attack
    hint: dict[str, Any] = {}
    if ms.takes_fixed and (fixed := memo.clean_features(ms.name, attack.targets)):
        hint["fixed"] = fixed
    clean: dict = {}
    if ms.counts_clean or (record is not None and ms.takes_clean_out):
        hint["clean_out"] = clean
    advs = attack.sweep(model, inputs, labels, step.strengths, **hint)
    if record is not None:
        record.note_gradient(ms.name, attack, inputs, clean)
    if ms.counts_clean:
        count_clean(ms.name, model, batch, labels, memo, tally, clean)
    return advs


def count_clean(
    name: str,
    model: SweptModel,
    batch: Mapping[str, Any],
    labels: torch.Tensor,
    memo: FeatureMemo,
    tally: Tally,
    clean: Mapping[str, Any],
) -> None:
    """Count a model's clean answers: from an attack's pass at the clean input when ``clean``
    holds its logits (keeping the clean features it computed for the sweeps that follow),
    else from a clean forward pass."""
    if "logits" in clean:
        memo.store_clean(name, clean["features"])
        logits = clean["logits"]
    else:
        with torch.no_grad():
            inputs = inputs_for(model, batch, None)
            logits = memo.logits(name, model, inputs, feature_tags(model, None, None))
    tally.add((name, "clean", 0.0), labels, logits.argmax(1))
