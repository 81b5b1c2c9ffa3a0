"""Projected Gradient Descent (Madry et al. 2018, arXiv 1706.06083), L-inf and L2."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch

from modfuse._registry import register_attack
from modfuse.attacks.base import Attack, AttackContext, per_key, per_sample
from modfuse.attacks.checks import check_count, check_strength


def _per_sample_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample, shaped to broadcast against ``x``: (B, 1, ..., 1)."""
    return per_sample(x.flatten(1).norm(dim=1), x)


@register_attack("pgd")
class PGD(Attack):
    """Iterated gradient steps, each projected back onto the eps-ball around the input.

    With several targets, each key has its own ball (its own eps); with ``norm="l2"`` each
    sample's perturbation of each key is projected separately.

    Args:
        eps: Budget, shared or per key.
        steps: Number of gradient steps.
        alpha: Step size; default ``2.5 * eps / steps``.
        norm: ``"linf"`` or ``"l2"``.
        random_start: Start from a random point of the ball (drawn once per call).
        early_stop: Stop moving a sample once the attack has succeeded on it.
        targets: Input keys to attack. Other arguments: see :class:`Attack`. With a
            ``region``, gradients and random starts are zero outside it and every step is
            projected back into it, so the L2 norm is that of the perturbation inside.

    Examples:
        >>> import torch
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, num_classes=3)
        >>> x = {"fg": torch.rand(2, 3, 16, 16), "bg": torch.rand(2, 3, 16, 16)}
        >>> adv = PGD(eps=0.5, norm="l2", steps=3)(model, x, torch.tensor([0, 2]))
        >>> bool((adv["fg"] - x["fg"]).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5)
        True
    """

    strength_param = "eps"
    uses_gradients = True
    iterative = True

    def __init__(
        self,
        eps: float | Mapping[str, float] = 8 / 255,
        steps: int = 10,
        alpha: float | Mapping[str, float] | None = None,
        norm: Literal["linf", "l2"] = "linf",
        random_start: bool = True,
        early_stop: bool = False,
        targets: Sequence[str] = ("fg",),
        **kw,
    ) -> None:
        super().__init__(targets, **kw)
        if alpha is not None:
            check_strength(alpha, "alpha")
        if norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
        check_count(steps, "steps")
        self.steps, self.alpha, self.norm = steps, alpha, norm
        self.strength_unit = norm  # eps is a radius of the chosen norm
        self.check_strength_value(eps)  # >= 0; an L-inf one at most 1 on [0, 1] pixels
        self.eps = eps
        self.random_start, self.early_stop = random_start, early_stop

    def _start(self, ctx: AttackContext, k: str, x: torch.Tensor, eps: float) -> torch.Tensor:
        """The start for target ``k``: a random point of each item's ball, drawn from the
        item's own stream (``ctx.items``), or ``x`` itself."""
        if not self.random_start or eps == 0:
            return x.clone()
        shape = x.shape[1:]
        if self.norm == "linf":
            noise = ctx.items.rand(shape, dtype=x.dtype) * 2 - 1  # (B, ...)
            return ctx.clamp(k, x + eps * noise.to(x.device))
        direction = ctx.items.randn(shape, dtype=x.dtype).to(x.device)
        # Confined before normalising: the start's radius is spent inside the region.
        direction = ctx.confine({k: direction})[k]
        radius = per_sample(ctx.items.rand((), dtype=x.dtype).to(x.device), x)  # (B, 1, ...)
        return ctx.clamp(k, x + direction / (_per_sample_norm(direction) + 1e-12) * radius * eps)

    def _project(self, x: torch.Tensor, adv: torch.Tensor, eps: float) -> torch.Tensor:
        if self.norm == "linf":
            return torch.clamp(adv - x, min=-eps, max=eps)
        delta = adv - x
        factor = torch.clamp(eps / (_per_sample_norm(delta) + 1e-12), max=1.0)
        return delta * factor

    def perturb(self, ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        eps = {k: per_key(self.eps, k, "eps") for k in x}
        if all(e == 0 for e in eps.values()):
            return x
        alpha = {
            k: 2.5 * eps[k] / self.steps if self.alpha is None else per_key(self.alpha, k, "alpha")
            for k in x
        }
        # Drawn in sorted key order: an item's start does not depend on the order of targets.
        starts = {k: self._start(ctx, k, x[k], eps[k]) for k in sorted(x)}
        adv = {k: starts[k] for k in x}
        batch = next(iter(x.values())).shape[0]
        active = torch.ones(batch, dtype=torch.bool)
        for _ in range(self.steps):
            if self.early_stop:
                pred = ctx.predictions(adv)
                done = pred == ctx.labels if self.targeted else pred != ctx.labels
                active = ~done.cpu()
                if not active.any():
                    break
            grad = ctx.gradient(adv)
            for k in x:
                g = grad[k]
                if self.norm == "linf":
                    step = alpha[k] * g.sign()
                else:
                    step = alpha[k] * g / (_per_sample_norm(g) + 1e-10)
                if self.early_stop:
                    step = step * per_sample(active.to(step.device), g)
                moved = adv[k] + step
                adv[k] = ctx.clamp(k, x[k] + self._project(x[k], moved, eps[k]))
        return adv
