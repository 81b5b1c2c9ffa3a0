"""What the sanity checks share: their names and meanings, the flag they raise, and what they
read off an attack. Imported by :mod:`modfuse.robustness.sanity.checks` (model probes) and
:mod:`modfuse.robustness.sanity.rows` (checks on a sweep's rows), which do not import each other.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from modfuse.protocols import AttackMeta

#: What each check means and what to do about it.
CHECKS: dict[str, tuple[str, str]] = {
    "accuracy_rises_with_strength": (
        "accuracy went up as the perturbation grew, beyond sampling noise",
        "look for gradient masking or a perturbation that helps the model; use more samples",
    ),
    "iterative_weaker_than_single_step": (
        "an iterative attack (PGD, APGD, Square...) left more accuracy than a single-step "
        "gradient attack (FGSM) of the same norm at the same eps",
        "raise the iterative attack's steps or step size, use random restarts, check the loss "
        "the attack climbs",
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
        "random noise of the same size and norm cost more accuracy than the gradient attack",
        "the attack is not working on this model (gradient masking or a bug): do not read its "
        "accuracy as robustness",
    ),
    "single_class_predictions": (
        "the model answered one class for (nearly) every clean item: its accuracy is that "
        "class's share of the items (the majority baseline), not something it learned",
        "check the training (labels, learning rate, class balance, frozen encoders built "
        "without weights) before reading any number of this model",
    ),
    "accuracy_unmoved": (
        "accuracy was exactly the clean accuracy under every perturbation at every strength",
        "a model whose answers no perturbation moves is ignoring the perturbed inputs (or all "
        "of its inputs): check that the attacks reach it and that it is not collapsed",
    ),
}
#: Checks read from a sweep's rows; the others probe the models.
ROW_CHECKS = (
    "accuracy_rises_with_strength",
    "iterative_weaker_than_single_step",
    "accuracy_unmoved",
)
#: Checks read from the sweep's counts of each model's answers (neither rows nor probes).
COUNT_CHECKS = ("single_class_predictions",)
#: Share of the clean items given one class above which a model counts as collapsed.
COLLAPSE_SHARE = 0.95
#: Old names of checks, still read from results.json files written before the rename.
RENAMED = {"pgd_weaker_than_fgsm": "iterative_weaker_than_single_step"}


@dataclass
class Flag:
    """One failed sanity check."""

    check: str
    model: str
    detail: str
    meaning: str = ""
    action: str = ""

    def __post_init__(self) -> None:
        self.check = RENAMED.get(self.check, self.check)
        if self.check not in CHECKS:
            raise ValueError(f"unknown sanity check {self.check!r}; expected one of {list(CHECKS)}")
        self.meaning, self.action = CHECKS[self.check]

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def attack_meta(attack: Any) -> dict[str, Any]:
    """The metadata a check or a report reads from an attack (:class:`AttackMeta`).

    Examples:
        >>> from modfuse.attacks import FGSM, GaussianBlur
        >>> attack_meta(FGSM())["norm"], attack_meta(GaussianBlur())["unit"]
        ('linf', 'sigma')
    """
    if not isinstance(attack, AttackMeta):
        raise TypeError(
            "an attack must declare norm, strength_param, strength_unit, uses_gradients, "
            "queries_model, iterative and stronger_when (modfuse.attacks.base.Attack does); "
            f"got {type(attack).__name__}"
        )
    return {
        "norm": attack.norm,
        "unit": attack.strength_unit,
        "iterative": bool(attack.iterative),
        "stronger_when": attack.stronger_when,
    }


def noise_margin(acc: float, n: int) -> float:
    """Beyond sampling noise: two standard errors, and at least 2 points."""
    return max(0.02, 2 * math.sqrt(max(acc * (1 - acc), 1e-4) / max(n, 1)))
