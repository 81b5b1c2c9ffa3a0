"""Sanity checks of a robustness evaluation, in the spirit of AutoAttack's: each flag says what
went wrong, what it means and what to do. A robustness number that fails one of them is
likely false robustness (gradient masking, a broken attack, a random model), not robustness.

Checks choose what to compare by the attacks' metadata (``norm``, ``strength_unit``,
``iterative``, ``stronger_when`` of :class:`modfuse.attacks.base.Attack`), never by class
names. This module probes models; :mod:`modfuse.robustness.sanity.rows` reads a sweep's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from modfuse.devices import model_device, to_model
from modfuse.modes import eval_mode
from modfuse.robustness.sanity.flags import (  # noqa: F401 (re-exported: the checks' public home)
    CHECKS,
    RENAMED,
    ROW_CHECKS,
    Flag,
    attack_meta,
    noise_margin,
)
from modfuse.robustness.sanity.rows import check_rows, check_statuses, row_checks  # noqa: F401

if TYPE_CHECKING:
    from modfuse.attacks.base import Attack


def stochastic_flags(name: str, first: torch.Tensor, second: torch.Tensor) -> list[Flag]:
    """A flag when two calls of the model on the same inputs gave different logits."""
    if torch.equal(first, second):
        return []
    gap = float((first - second).abs().max())
    return [Flag("stochastic_model", name, f"max difference {gap:.3g} between two calls")]


def float_targets(attack: Any, inputs: Mapping[str, Any]) -> list[str]:
    """The attack's targets that are floating-point inputs (those with an input gradient)."""
    return [t for t in attack.targets if t in inputs and inputs[t].is_floating_point()]


def gradient_flags(
    name: str,
    model: torch.nn.Module,
    inputs: Mapping[str, Any],
    labels: torch.Tensor,
    targets: Sequence[str],
    forward: Callable[[dict[str, Any]], torch.Tensor] | None = None,
) -> list[Flag]:
    """Flags for targeted keys whose loss gradient is zero for most samples (one backward);
    ``forward`` computes the logits in place of ``model`` (e.g. from stored features of the
    keys that are not targets)."""
    leaves = {
        k: (v.detach().clone().requires_grad_(k in targets) if torch.is_tensor(v) else v)
        for k, v in inputs.items()
    }
    with torch.enable_grad():
        # Summed: each item's gradient is that of its own loss, whatever the batch size.
        logits = (forward or model)(leaves)
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
        grads = torch.autograd.grad(loss, [leaves[t] for t in targets], allow_unused=True)
    return dead_gradient_flags(name, dict(zip(targets, grads)), len(labels))


def dead_gradient_flags(
    name: str, gradients: Mapping[str, torch.Tensor | None], n: int
) -> list[Flag]:
    """Flags for keys whose per-item input gradients (``{key: (n, ...)}``, of each item's own
    loss; None: no gradient reached the key) are zero for most of the ``n`` items."""
    flags = []
    for t, g in gradients.items():
        if g is None:
            dead = torch.ones(n, dtype=torch.bool)
        else:
            # in float32: 1e-12 is 0 in float16, where no gradient would ever count as dead
            dead = g.detach().flatten(1).abs().amax(1).float() < 1e-12
        if float(dead.float().mean()) > 0.5:
            flags.append(
                Flag(
                    "vanishing_gradient",
                    name,
                    f"input gradient of {t!r} is zero for {int(dead.sum())}/{n} samples",
                )
            )
    return flags


def random_noise(
    attack: Attack,
    inputs: Mapping[str, Any],
    targets: Sequence[str],
    strength: float,
    seed: int = 0,
) -> dict[str, Any]:
    """``inputs`` with a random perturbation of the attack's norm and size on ``targets``:
    random signs times ``strength`` for "linf", a random direction of L2 length ``strength``
    (per sample) for "l2"; inside the attack's ``region`` mask if it has one; clamped to each
    key's valid range.

    Raises:
        ValueError: the attack's norm is neither "linf" nor "l2" (no size to match).
    """
    norm = attack_meta(attack)["norm"]
    if norm not in ("linf", "l2"):
        raise ValueError(
            f"random noise of an attack's size needs norm 'linf' or 'l2', got {norm!r}"
        )
    g = torch.Generator().manual_seed(seed)
    region = attack.region
    out = dict(inputs)
    for t in targets:
        x = inputs[t]
        if norm == "linf":
            step = (torch.randint(0, 2, x.shape, generator=g) * 2 - 1).to(x)
        else:
            step = torch.randn(x.shape, generator=g).to(x)
        if region is not None:  # confined where the attack is: the same threat model
            step = step * (inputs[region] > 0.5).to(x)
        if norm == "l2":
            size = step.flatten(1).norm(dim=1).clamp_min(1e-12)
            step = step / size.view(-1, *[1] * (x.dim() - 1))
        r = attack.range_of(t, x)
        y = x + strength * step
        out[t] = y if r is None else y.clamp(r[0], r[1])
    return out


def noise_flags(
    name: str,
    attack: Any,
    strength: float,
    targets: Sequence[str],
    adv: float,
    noise: float,
    n: int,
) -> list[Flag]:
    """A flag when random noise (accuracy ``noise``) beat the attack (accuracy ``adv``)."""
    if noise >= adv - noise_margin(adv, n):
        return []
    norm = attack_meta(attack)["norm"]
    what = f"{type(attack).__name__} eps {strength:g} ({norm}) on {list(targets)}"
    return [
        Flag(
            "noise_stronger_than_attack",
            name,
            f"{what}: accuracy {adv:.3f}, random {norm} noise {noise:.3f}",
        )
    ]


def _accuracy(model: torch.nn.Module, inputs: Mapping[str, Any], labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(inputs).argmax(1) == labels).float().mean())


def check_model(
    name: str,
    model: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    attacks: Sequence[tuple[Any, float]] = (),
    stochastic: bool = True,
) -> list[Flag]:
    """Flags found by probing a model on one batch: stochastic outputs, vanishing input
    gradients of targeted keys, and random noise (of the attack's norm) stronger than a
    gradient attack. Attacks of norm "none" get the gradient check only.

    Args:
        name: The model's name in the report.
        model: The model (every submodule's mode is restored).
        inputs: One batch of the model's inputs (keep it small: every probe runs on all of it).
        labels: Its labels.
        attacks: ``(attack, strength)`` pairs of gradient attacks to probe.
        stochastic: Also check that two identical calls agree.

    Examples:
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": {"name": "mlp", "in_dim": 4}}, num_classes=2)
        >>> check_model("m", model, {"fg": torch.rand(8, 4)}, torch.zeros(8, dtype=torch.long))
        []
    """
    flags: list[Flag] = []
    inputs = to_model(inputs, model)
    labels = labels.to(model_device(model))
    with eval_mode(model):
        if stochastic:
            with torch.no_grad():
                flags += stochastic_flags(name, model(inputs), model(inputs))
        probed: set[tuple[str, ...]] = set()
        for attack, strength in attacks:
            if not attack.uses_gradients:
                continue
            targets = float_targets(attack, inputs)
            if not targets or strength <= 0:
                continue
            if tuple(targets) not in probed:  # the clean gradient is the same for every attack
                probed.add(tuple(targets))
                flags += gradient_flags(name, model, inputs, labels, targets)
            if attack_meta(attack)["norm"] not in ("linf", "l2"):
                continue
            adv = _accuracy(model, attack.with_strength(strength)(model, inputs, labels), labels)
            noise = _accuracy(model, random_noise(attack, inputs, targets, strength), labels)
            flags += noise_flags(name, attack, strength, targets, adv, noise, len(labels))
    return flags


def dedupe(flags: Sequence[Flag]) -> list[Flag]:
    """One flag per (check, model, detail)."""
    seen, out = set(), []
    for f in flags:
        key = (f.check, f.model, f.detail)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
