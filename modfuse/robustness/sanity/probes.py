"""The model probes of a robustness sweep's sanity checks, made cheap enough to run always.

They run on a small fixed subsample of the first batch (``sanity_samples`` items, as
AutoAttack's checks do) and repeat no work. What the sweep computed on that batch anyway is
kept in a :class:`SampleRecord` and read, not recomputed: which attacked items each model got
right (the adversarial accuracy), the clean features of every modality (for the noise and
gradient probes' untouched modalities), and the input gradient that an attack's own gradient
pass took at the clean input (FGSM's). What is left to run: the stochastic check (two calls
on the first :data:`STOCHASTIC_SAMPLES` items, once per model), the clean gradient where no
attack's pass gave it (once per model, targets and inputs), and random noise of each size
(once for all attacks of that size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from modfuse.robustness.inputs import SweptModel, feature_tags, inputs_for, takes_targets
from modfuse.robustness.memo import FeatureMemo
from modfuse.robustness.sanity.checks import (
    Flag,
    attack_meta,
    dead_gradient_flags,
    float_targets,
    gradient_flags,
    noise_flags,
    random_noise,
    stochastic_flags,
)
from modfuse.robustness.sanity.record import SampleRecord, gradient_key, head

Coverage = dict[str, tuple[bool, str]]
PROBES = ("vanishing_gradient", "stochastic_model", "noise_stronger_than_attack")
#: Items the stochastic check calls each model on, twice (at most ``sanity_samples``): a
#: random layer moves every item's logits, so a few items show it as well as many.
STOCHASTIC_SAMPLES = 8


def not_run(why: str) -> Coverage:
    """Coverage saying that no model probe ran, and why."""
    return {name: (False, why) for name in PROBES}


def probe_models(
    models: Mapping[str, SweptModel],
    sweeps: Sequence[Any],
    record: SampleRecord,
    memo: FeatureMemo,
) -> tuple[list[Flag], Coverage]:
    """Probe each model on ``record``'s subsample of the first batch.

    Args:
        models: The evaluated models (in eval mode).
        sweeps: The sweeps (:class:`modfuse.robustness.sweep.Sweep`).
        record: The subsample and what the sweep computed on it.
        memo: The sweep's feature memo (its store is replaced here by the record's features).

    Returns:
        The flags, and for each probe whether it ran and on what (or why not).
    """
    batch, labels = record.batch, record.labels
    few, few_labels = head(batch, labels, STOCHASTIC_SAMPLES)
    flags: list[Flag] = []
    grads: set[tuple] = set()
    reused = 0
    noise: list[str] = []
    noise_acc: dict[tuple, float] = {}
    memo.store = dict(record.features)  # clean features of the subsample, every modality
    for n, model in models.items():
        with torch.no_grad():
            few_inputs = inputs_for(model, few, None)
            flags += stochastic_flags(n, model(few_inputs), model(few_inputs))
        for s in sweeps:
            attack = s.attack
            if not (attack.uses_gradients and s.source is None and takes_targets(model, attack)):
                continue  # transfer and gradient-free attacks: no gradient of this model to probe
            inputs = inputs_for(model, batch, attack)
            targets = float_targets(attack, inputs)
            eps = max(float(v) for v in s.strengths)
            if not targets or eps <= 0:
                continue
            key = gradient_key(n, targets, inputs)
            tags = feature_tags(model, attack, None)  # untouched modalities: the stored features

            def forward(x: dict, model: Any = model, tags: dict = tags, n: str = n) -> Any:
                return memo.logits(n, model, x, tags)

            if key not in grads:  # the clean gradient is the same for every attack
                grads.add(key)
                if key in record.gradients:  # an attack's gradient pass took it already
                    reused += 1
                    flags += dead_gradient_flags(n, record.gradients[key], len(labels))
                else:
                    flags += gradient_flags(n, model, inputs, labels, targets, forward)
            if attack_meta(attack)["norm"] not in ("linf", "l2") or (n, s.name) not in record.right:
                continue
            norm = attack_meta(attack)["norm"]
            noise_key = (*key, norm, eps, tuple(attack.range_of(t, inputs[t]) for t in targets))
            if noise_key not in noise_acc:  # the same noise for every attack of this size
                noisy = random_noise(attack, inputs, targets, eps)
                with torch.no_grad():
                    logits = forward(noisy)
                noise_acc[noise_key] = float((logits.argmax(1) == labels).float().mean())
            acc_noise = noise_acc[noise_key]
            acc_adv = float(record.right[(n, s.name)].float().mean())
            flags += noise_flags(n, attack, eps, targets, acc_adv, acc_noise, len(labels))
            noise.append(f"{n}/{s.name}")
    memo.store.clear()
    items = f"{len(labels)} item(s) of the first batch"
    taken = f" ({reused} read off an attack's own gradient pass)" if reused else ""
    cov: Coverage = {
        "stochastic_model": (
            True,
            f"{len(models)} model(s) called twice on {len(few_labels)} item(s) of the first batch",
        ),
        "vanishing_gradient": (
            (True, f"{len(grads)} input gradient(s) probed on {items}{taken}")
            if grads
            else (False, "no white-box gradient attack was swept")
        ),
        "noise_stronger_than_attack": (
            (True, f"random noise of the attack's norm and eps vs {', '.join(noise)} on {items}")
            if noise
            else (False, "no white-box gradient attack with an L-inf or L2 eps was swept")
        ),
    }
    return flags, cov
