"""Sanity checks of a robustness evaluation, in the spirit of AutoAttack's: each flag says what
went wrong, what it means and what to do. A robustness number that fails one of them is
likely false robustness (gradient masking, a broken attack, a random model), not robustness.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from modfuse.devices import model_device, to_model
from modfuse.modes import eval_mode

#: What each check means and what to do about it.
CHECKS: dict[str, tuple[str, str]] = {
    "accuracy_rises_with_strength": (
        "accuracy went up as the perturbation grew, beyond sampling noise",
        "look for gradient masking or a perturbation that helps the model; use more samples",
    ),
    "pgd_weaker_than_fgsm": (
        "PGD, which starts where FGSM ends, left more accuracy than FGSM at the same eps",
        "raise PGD's steps or step size, use random restarts, check the loss the attack climbs",
    ),
    "vanishing_gradient": (
        "the loss has (almost) no gradient with respect to a targeted input",
        "a non-differentiable step (rounding, argmax, a frozen hard threshold) hides the "
        "gradient: attack a differentiable surrogate (BPDA) or use a gradient-free attack",
    ),
    "stochastic_model": (
        "two identical calls of the model in eval mode gave different outputs",
        "randomness (dropout left on, random transforms) makes gradients noisy: average "
        "gradients over draws (EOT) or evaluate the model deterministically",
    ),
    "noise_stronger_than_attack": (
        "random noise of the same size cost more accuracy than the gradient attack",
        "the attack is not working on this model (gradient masking or a bug): do not read its "
        "accuracy as robustness",
    ),
}


@dataclass
class Flag:
    """One failed sanity check."""

    check: str
    model: str
    detail: str
    meaning: str = ""
    action: str = ""

    def __post_init__(self) -> None:
        self.meaning, self.action = CHECKS[self.check]

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _noise_margin(acc: float, n: int) -> float:
    """Beyond sampling noise: two standard errors, and at least 2 points."""
    return max(0.02, 2 * math.sqrt(max(acc * (1 - acc), 1e-4) / max(n, 1)))


def check_rows(rows: Sequence[Mapping[str, Any]]) -> list[Flag]:
    """Flags visible in a sweep's rows: accuracy rising with strength, PGD weaker than FGSM.

    Examples:
        >>> points = [("clean", "none", 0.0, 0.9), ("b", "GaussianBlur", 1.0, 0.5),
        ...           ("b", "GaussianBlur", 2.0, 0.8)]
        >>> rows = [{"model": "m", "perturbation": p, "attack": a, "targets": "fg",
        ...          "strength": s, "accuracy": acc, "n": 500} for p, a, s, acc in points]
        >>> [f.check for f in check_rows(rows)]
        ['accuracy_rises_with_strength']
    """
    flags: list[Flag] = []
    clean = {r["model"]: r for r in rows if r["perturbation"] == "clean"}
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        if r["perturbation"] != "clean":
            groups.setdefault((r["model"], r["perturbation"]), []).append(r)
    for (model, pert), pts in groups.items():
        if pts[0].get("attack") == "DropModality":
            continue
        seq = ([clean[model]] if model in clean else []) + sorted(pts, key=lambda r: r["strength"])
        for a, b in zip(seq, seq[1:]):
            if b["accuracy"] > a["accuracy"] + _noise_margin(a["accuracy"], a["n"]):
                flags.append(
                    Flag(
                        "accuracy_rises_with_strength",
                        model,
                        f"{pert}: {a['accuracy']:.3f} at {a['strength']:g} -> "
                        f"{b['accuracy']:.3f} at {b['strength']:g}",
                    )
                )
                break
    by_key: dict[tuple, Mapping[str, Any]] = {}
    for r in rows:
        if r.get("attack") in ("FGSM", "PGD") and not r.get("source"):
            by_key[(r["model"], r["attack"], r["targets"], round(r["strength"], 8))] = r
    for (model, attack, targets, eps), r in by_key.items():
        fgsm = by_key.get((model, "FGSM", targets, eps))
        if attack == "PGD" and fgsm is not None and eps > 0:
            if r["accuracy"] > fgsm["accuracy"] + _noise_margin(fgsm["accuracy"], fgsm["n"]):
                flags.append(
                    Flag(
                        "pgd_weaker_than_fgsm",
                        model,
                        f"eps {eps:g} on {targets}: PGD {r['accuracy']:.3f} vs "
                        f"FGSM {fgsm['accuracy']:.3f}",
                    )
                )
    return flags


def check_model(
    name: str,
    model: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    attacks: Sequence[tuple[Any, float]] = (),
    stochastic: bool = True,
) -> list[Flag]:
    """Flags found by probing a model on one batch: stochastic outputs, vanishing input
    gradients of targeted keys, and random noise stronger than a gradient attack.

    Args:
        name: The model's name in the report.
        model: The model (every submodule's mode is restored).
        inputs: One batch of the model's inputs.
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
        with torch.no_grad():
            a, b = model(inputs), model(inputs)
        if stochastic and not torch.equal(a, b):
            flags.append(
                Flag(
                    "stochastic_model",
                    name,
                    f"max difference {float((a - b).abs().max()):.3g} between two calls",
                )
            )
        for attack, strength in attacks:
            if not getattr(attack, "uses_gradients", False):
                continue
            targets = [t for t in attack.targets if t in inputs and inputs[t].is_floating_point()]
            if not targets or strength <= 0:
                continue
            leaves = {
                k: (v.detach().clone().requires_grad_(k in targets) if torch.is_tensor(v) else v)
                for k, v in inputs.items()
            }
            with torch.enable_grad():
                loss = torch.nn.functional.cross_entropy(model(leaves), labels)
                grads = torch.autograd.grad(loss, [leaves[t] for t in targets], allow_unused=True)
            for t, g in zip(targets, grads):
                per_sample = (
                    g.flatten(1).abs().amax(1)
                    if g is not None
                    else torch.zeros(len(labels), device=labels.device)
                )
                if float((per_sample < 1e-12).float().mean()) > 0.5:
                    flags.append(
                        Flag(
                            "vanishing_gradient",
                            name,
                            f"input gradient of {t!r} is zero for "
                            f"{int((per_sample < 1e-12).sum())}/{len(labels)} samples",
                        )
                    )
            adv = attack.with_strength(strength)(model, inputs, labels)
            noisy = dict(inputs)
            g = torch.Generator().manual_seed(0)
            for t in targets:
                # Random signs: the same L-inf size as the attack, no gradient information.
                sign = torch.randint(0, 2, inputs[t].shape, generator=g).to(inputs[t]) * 2 - 1
                r = attack.range_of(t, inputs[t])
                x = inputs[t] + strength * sign
                noisy[t] = x if r is None else x.clamp(r[0], r[1])
            with torch.no_grad():
                acc_adv = float((model(adv).argmax(1) == labels).float().mean())
                acc_noise = float((model(noisy).argmax(1) == labels).float().mean())
            if acc_noise < acc_adv - _noise_margin(acc_adv, len(labels)):
                flags.append(
                    Flag(
                        "noise_stronger_than_attack",
                        name,
                        f"{type(attack).__name__} eps {strength:g} on {targets}: "
                        f"accuracy {acc_adv:.3f}, random signs {acc_noise:.3f}",
                    )
                )
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
