"""The model probes of a robustness sweep's sanity checks, made cheap enough to run always.

They run on a small fixed subsample of the first batch (``sanity_samples`` items, as
AutoAttack's checks do) and repeat no work: the stochastic check runs once per model; the
clean gradient once per (model, targets, inputs); the adversarial accuracy is read from the
sweep itself (the very attacked items it scored, not a second attack); random noise of one
size is drawn and scored once for all attacks of that size; and the gradient and the noise
reuse the stored clean features of the modalities they leave alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from modfuse.sanity import (
    Flag,
    attack_meta,
    gradient_flags,
    noise_flags,
    random_noise,
    stochastic_flags,
)
from modfuse.sweep_work import SweptModel, _inputs_for, _tags, _targets_of

Coverage = dict[str, tuple[bool, str]]
PROBES = ("vanishing_gradient", "stochastic_model", "noise_stronger_than_attack")


def head(batch: Mapping[str, Any], labels: torch.Tensor, samples: int) -> tuple[dict, Any]:
    """The first ``samples`` items of a batch: every per-item entry cut, others kept.

    Examples:
        >>> sub, y = head({"x": torch.zeros(8, 2), "name": "a"}, torch.arange(8), 3)
        >>> sub["x"].shape[0], sub["name"], y.tolist()
        (3, 'a', [0, 1, 2])
    """
    n = len(labels)

    def cut(v: Any) -> Any:
        per_item = (torch.is_tensor(v) and v.dim() > 0) or isinstance(v, (list, tuple))
        return v[:samples] if per_item and len(v) == n else v

    return {k: cut(v) for k, v in batch.items()}, labels[:samples]


def not_run(why: str) -> Coverage:
    """Coverage saying that no model probe ran, and why."""
    return {name: (False, why) for name in PROBES}


def probe_models(
    models: Mapping[str, SweptModel],
    sweeps: Sequence[Any],
    sample: tuple[dict, torch.Tensor],
    scored: Mapping[tuple[str, str], torch.Tensor],
    memo: Any,
) -> tuple[list[Flag], Coverage]:
    """Probe each model on ``sample`` (a subsample of the first batch).

    Args:
        models: The evaluated models (in eval mode).
        sweeps: The sweeps (:class:`modfuse.evaluate.Sweep`).
        sample: ``(batch, labels)`` to probe on.
        scored: ``{(model, sweep name): correct}``: per item of ``sample``, whether the model
            was right on the sweep's attacked input at its largest strength.
        memo: The sweep's feature memo (its store is cleared here and reused).

    Returns:
        The flags, and for each probe whether it ran and on what (or why not).
    """
    batch, labels = sample
    flags: list[Flag] = []
    grads: set[tuple] = set()
    noise: list[str] = []
    noise_acc: dict[tuple, float] = {}
    for n, model in models.items():
        memo.store.clear()
        inputs = _inputs_for(model, batch, None)
        with torch.no_grad():
            # The second call stores the clean features that the noise probes below reuse.
            first = model(inputs)
            flags += stochastic_flags(
                n, first, memo.logits(n, model, inputs, _tags(model, None, None))
            )
        for s in sweeps:
            attack = s.attack
            if not (attack.uses_gradients and s.source is None and _targets_of(model, attack)):
                continue  # transfer and gradient-free attacks: no gradient of this model to probe
            inputs = _inputs_for(model, batch, attack)
            targets = [t for t in attack.targets if t in inputs and inputs[t].is_floating_point()]
            eps = max(float(v) for v in s.strengths)
            if not targets or eps <= 0:
                continue
            key = (n, tuple(targets), tuple(sorted(inputs)))
            tags = _tags(model, attack, None)  # untouched modalities: the stored features

            def forward(x: dict, model: Any = model, tags: dict = tags, n: str = n) -> Any:
                return memo.logits(n, model, x, tags)

            if key not in grads:  # the clean gradient is the same for every attack
                grads.add(key)
                flags += gradient_flags(n, model, inputs, labels, targets, forward)
            if attack_meta(attack)["norm"] not in ("linf", "l2") or (n, s.name) not in scored:
                continue
            norm = attack_meta(attack)["norm"]
            noise_key = (*key, norm, eps, tuple(attack.range_of(t, inputs[t]) for t in targets))
            if noise_key not in noise_acc:  # the same noise for every attack of this size
                noisy = random_noise(attack, inputs, targets, eps)
                with torch.no_grad():
                    logits = forward(noisy)
                noise_acc[noise_key] = float((logits.argmax(1) == labels).float().mean())
            acc_noise = noise_acc[noise_key]
            acc_adv = float(scored[(n, s.name)].float().mean())
            flags += noise_flags(n, attack, eps, targets, acc_adv, acc_noise, len(labels))
            noise.append(f"{n}/{s.name}")
    memo.store.clear()
    items = f"{len(labels)} item(s) of the first batch"
    cov: Coverage = {
        "stochastic_model": (True, f"{len(models)} model(s) called twice on {items}"),
        "vanishing_gradient": (
            (True, f"{len(grads)} input gradient(s) probed on {items}")
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
