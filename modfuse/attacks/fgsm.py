"""Fast Gradient Sign Method (Goodfellow et al. 2015, arXiv 1412.6572)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from modfuse._registry import register_attack
from modfuse.attacks.base import Attack, AttackContext, per_key, returned_inputs
from modfuse.devices import to_model


@register_attack("fgsm")
class FGSM(Attack):
    """``x + eps * sign(grad_x loss)``, then clamped to the valid range.

    Args:
        eps: L-inf budget, shared or per key (``{"fg": 8/255, "bg": 2/255}``).
        targets: Input keys to attack. Other arguments (``region`` among them, which confines
            the step to a mask): see :class:`Attack`.

    Examples:
        >>> import torch
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": {"name": "mlp", "in_dim": 4}}, num_classes=2)
        >>> x = {"fg": torch.full((3, 4), 0.5)}
        >>> adv = FGSM(eps=0.1, ranges={"fg": (0, 1)})(model, x, torch.tensor([0, 1, 0]))
        >>> torch.allclose((adv["fg"] - x["fg"]).abs(), torch.tensor(0.1))
        True
    """

    strength_param = "eps"
    uses_gradients = True
    norm = "linf"
    strength_unit = "linf"
    iterative = False  # the single-step reference that iterative attacks must beat

    def __init__(
        self, eps: float | Mapping[str, float] = 8 / 255, targets: Sequence[str] = ("fg",), **kw
    ) -> None:
        super().__init__(targets, **kw)
        self.check_strength_value(eps)  # >= 0, and at most 1 on [0, 1] pixels
        self.eps = eps

    def sweep(
        self,
        model: torch.nn.Module,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        strengths: Sequence[float],
        fixed: Mapping[str, torch.Tensor] | None = None,
        clean_out: dict | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """All strengths from one gradient: ``x + eps * sign(grad)`` differs only in ``eps``.

        Equal to calling the attack once per strength (the gradient is taken at the clean
        input either way), at the cost of one backward pass instead of one per strength.
        ``fixed``: features of the untouched modalities, if the caller has computed them.
        ``clean_out``: a dict that gets the clean ``logits`` (B, C) of the gradient pass, the
        clean ``features`` of the target modalities (when they are modality inputs) and the
        ``gradients`` ``{target: (B, ...)}`` of the batch-mean loss there (each item's own
        loss gradient over B; zero outside the region), so a caller that needs the clean
        accuracy or the clean input gradient does not run that pass again. Keys that are not
        targets come back as :meth:`Attack.__call__` returns them.
        """
        for s in strengths:
            self.check_strength_value(s)
        given = inputs
        inputs = to_model(inputs, model)

        def every_strength(ctx: AttackContext, x: dict[str, torch.Tensor]) -> list[dict]:
            ctx.clean_out = clean_out  # the gradient below is taken at the clean input
            grad = ctx.gradient(x)  # of each item's own loss
            if clean_out is not None:
                n = len(ctx.labels)
                clean_out["gradients"] = {k: g / n for k, g in grad.items()}
            sign = {k: g.sign() for k, g in grad.items()}
            return [{k: ctx.clamp(k, x[k] + float(s) * sign[k]) for k in x} for s in strengths]

        advs = self.run(model, inputs, labels, every_strength, fixed)
        return [returned_inputs(given, inputs, self.targets, adv) for adv in advs]

    def perturb(self, ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        eps = {k: per_key(self.eps, k, "eps") for k in x}
        if all(e == 0 for e in eps.values()):
            return x
        grad = ctx.gradient(x)
        return {k: x[k] + eps[k] * grad[k].sign() for k in x}
