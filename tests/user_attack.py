"""A user's attack, in its own file: one step of size eps along the L2-normalised gradient."""

from collections.abc import Sequence

import torch

from modfuse import register_attack
from modfuse.attacks import Attack


@register_attack("user_l2_step")
class L2Step(Attack):
    """``x + eps * g / ||g||_2`` per sample, ``g`` the loss gradient; then clamped.

    Args:
        eps: L2 radius of the step, in input units.
        targets: Input keys to attack. Other arguments: see :class:`modfuse.attacks.Attack`.
    """

    # Metadata reports and sweeps read: what the strength is and which norm bounds it.
    strength_param = "eps"
    uses_gradients = True
    norm = "l2"
    strength_unit = "l2"

    def __init__(self, eps: float = 0.5, targets: Sequence[str] = ("fg",), **kw) -> None:
        super().__init__(targets, **kw)
        self.check_strength_value(eps)
        self.eps = eps

    def perturb(self, ctx, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.eps == 0:
            return x
        grad = ctx.gradient(x)
        out = {}
        for k, g in grad.items():
            # One norm per sample, broadcast back over the sample's other dimensions.
            norm = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (g.dim() - 1))
            out[k] = x[k] + self.eps * g / norm
        return out
