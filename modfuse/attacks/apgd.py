"""Auto-PGD (Croce & Hein 2020, arXiv 2003.01690): PGD with no step size to tune."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor

from modfuse._registry import register_attack
from modfuse.attacks.base import Attack, AttackContext, per_key, per_sample
from modfuse.attacks.checks import check_count, check_strength

Tensors = dict[str, torch.Tensor]


def dlr_loss(logits: Tensor, labels: Tensor, target: Tensor | None = None) -> Tensor:
    """Difference of Logits Ratio per sample (arXiv 2003.01690, eq. 6 and its targeted form).

    Untargeted ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``, towards ``t`` ``-(z_y - z_t) /
    (z_pi1 - (z_pi3 + z_pi4) / 2)`` (``z_pi4 = z_pi3`` with 3 classes), ``z_pi1 >= z_pi2 ...``
    the sorted logits: unchanged by shifting or scaling them, which a model cannot hide behind.

    Shape:
        - logits ``(B, C)``, ``C >= 3``; labels, target and output ``(B,)``.

    Examples:
        >>> z = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
        >>> dlr_loss(z, torch.tensor([0, 0]))
        tensor([-0.6667,  1.0000])
    """
    c = logits.shape[1]
    if c < 3:
        raise ValueError(f"the DLR loss needs logits of at least 3 classes, got {c}")
    z = logits.sort(dim=1).values  # (B, C), ascending
    z_y = logits.gather(1, labels[:, None]).squeeze(1)
    if target is None:
        other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
        return -(z_y - other) / (z[:, -1] - z[:, -3] + 1e-12)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    fourth = z[:, -4] if c >= 4 else z[:, -3]
    return -(z_y - z_t) / (z[:, -1] - 0.5 * (z[:, -3] + fourth) + 1e-12)


def _pick(mask: torch.Tensor, a: Tensors, b: Tensors) -> Tensors:
    """Per sample, ``a`` where ``mask`` (B,) holds, else ``b``."""
    return {k: torch.where(per_sample(mask, a[k]), a[k], b[k]) for k in a}


@register_attack("apgd")
class APGD(Attack):
    """Auto-PGD: step size ``2 * eps``, halved per sample when progress stalls, momentum 0.75.

    At checkpoints (after 22% of the steps, then ever closer) a sample's step is halved and
    it goes back to its best point if its loss rose in at most ``rho`` of the steps since, or
    if its best loss did not improve and its step was kept last time. Per sample, the first
    point that fools the model is returned, else the highest-loss one. AutoAttack's APGD-CE
    is ``loss="ce"``, its APGD-T ``loss="dlr", target_classes=9``.

    Args:
        eps: Budget, shared or per key.
        steps: Gradient steps per run (each one forward and one backward pass).
        loss: ``"ce"`` (cross-entropy) or ``"dlr"`` (:func:`dlr_loss`).
        target_classes: With ``loss="dlr"``: targeted DLR towards each of the model's
            ``target_classes`` runner-up classes at the clean input (at most C - 1); 0: none.
        restarts: Runs per target class; a later run counts only for samples still unfooled.
        norm: ``"linf"`` or ``"l2"``.
        rho: Fraction of rising steps below which the step size is halved.
        random_start: Start each run at a random point of the ball (the paper's); False: at x.
        targets: Input keys to attack. Other arguments: see :class:`Attack`.

    Examples:
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, num_classes=3)
        >>> x = {"fg": torch.rand(2, 3, 16, 16), "bg": torch.rand(2, 3, 16, 16)}
        >>> adv = APGD(eps=4 / 255, steps=5, loss="dlr", seed=0)(model, x, torch.tensor([0, 2]))
        >>> adv["bg"] is x["bg"], float((adv["fg"] - x["fg"]).abs().max()) <= 4 / 255 + 1e-6
        (True, True)
    """

    strength_param = "eps"
    uses_gradients = True
    iterative = True

    def __init__(
        self,
        eps: float | Mapping[str, float] = 8 / 255,
        steps: int = 100,
        loss: Literal["ce", "dlr"] = "ce",
        target_classes: int = 0,
        restarts: int = 1,
        norm: Literal["linf", "l2"] = "linf",
        rho: float = 0.75,
        random_start: bool = True,
        targets: Sequence[str] = ("fg",),
        **kw,
    ) -> None:
        super().__init__(targets, **kw)
        check_count(steps, "steps")
        check_count(restarts, "restarts")
        check_count(target_classes, "target_classes", low=0)
        check_strength(rho, "rho", high=1.0)
        for name, value, allowed in (("loss", loss, ("ce", "dlr")), ("norm", norm, ("linf", "l2"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if target_classes and loss != "dlr":
            raise ValueError(f"target_classes needs loss='dlr' (APGD-T), got loss={loss!r}")
        if loss == "dlr" and self.targeted:
            msg = "loss='dlr' takes true labels (targeted=False); use target_classes=n for APGD-T"
            raise ValueError(msg)
        self.steps, self.loss, self.target_classes = steps, loss, target_classes
        self.restarts, self.norm, self.rho, self.random_start = restarts, norm, rho, random_start
        self.strength_unit = norm  # eps is a radius of the chosen norm
        self.check_strength_value(eps)  # >= 0; an L-inf one at most 1 on [0, 1] pixels
        self.eps = eps

    def _loss_grad(self, ctx: AttackContext, adv: Tensors, target: torch.Tensor | None) -> tuple:
        """Per-sample loss (B,), gradient per key and success (B,), in one pass."""
        leaves = {k: v.detach().requires_grad_(True) for k, v in adv.items()}
        with torch.enable_grad():
            logits = ctx.logits(leaves)
            if self.loss == "dlr":
                loss = dlr_loss(logits, ctx.labels, target)
            else:  # cross-entropy, descended towards the labels when targeted
                loss = (-1) ** self.targeted * self.loss_fn(logits, ctx.labels, reduction="none")
            grads = torch.autograd.grad(loss.sum(), list(leaves.values()), allow_unused=True)
        ctx.backward_count += 1
        grad = {k: torch.zeros_like(leaves[k]) if g is None else g for k, g in zip(leaves, grads)}
        grad = ctx.confine(grad)  # zero outside a region: steps and their norms stay inside
        return loss.detach(), grad, (logits.detach().argmax(1) == ctx.labels) == self.targeted

    def _unit(self, v: torch.Tensor) -> torch.Tensor:
        """``v`` over its per-sample norm (L-inf or L2), shapes kept."""
        size = v.flatten(1).abs().amax(1) if self.norm == "linf" else v.flatten(1).norm(dim=1)
        return v / (per_sample(size, v) + 1e-12)

    def _project(self, ctx: AttackContext, k: str, x: torch.Tensor, z: torch.Tensor, eps: float):
        """``z`` moved into the eps-ball around ``x`` and the valid range of ``k``."""
        d = z - x
        if self.norm == "linf":
            return ctx.clamp(k, x + d.clamp(-eps, eps))
        n = per_sample(d.flatten(1).norm(dim=1), d)
        return ctx.clamp(k, x + d * torch.clamp(eps / (n + 1e-12), max=1.0))

    def _run(self, ctx: AttackContext, x: Tensors, eps: dict, target: torch.Tensor | None):
        """One run from one start: (best points, their losses, fooling points, fooled).

        Each item's start comes from its own stream (``ctx.items``), keys in sorted order,
        and every later decision (step size, checkpoints, the point kept) is the item's own:
        an item's run does not depend on the other items of the batch.
        """
        adv = dict(x)
        for key in sorted(x) if self.random_start else ():
            v, shape = x[key], x[key].shape[1:]
            t = ctx.items.rand(shape) * 2 - 1 if self.norm == "linf" else ctx.items.randn(shape)
            t = ctx.confine({key: t.to(v)})[key]  # a start inside the region, of full radius
            adv[key] = ctx.clamp(key, v + eps[key] * self._unit(t))
        loss, grad, fooled = self._loss_grad(ctx, adv, target)
        best, best_loss, best_grad, found, prev = dict(adv), loss, dict(grad), dict(adv), dict(adv)
        step = torch.full_like(loss, 2.0)  # (B,) step size in units of eps
        k, since, loss_at_check, history = max(int(0.22 * self.steps), 1), 0, loss, [loss]
        halved = torch.ones_like(fooled)  # as AutoAttack: no "best did not improve" at first
        for i in range(self.steps):
            a = 0.75 if i > 0 else 1.0  # momentum; none on the first step
            for key, v in x.items():
                d = grad[key].sign() if self.norm == "linf" else self._unit(grad[key])
                d = per_sample(step, v) * eps[key] * d
                z = self._project(ctx, key, v, adv[key] + d, eps[key])
                z = adv[key] + a * (z - adv[key]) + (1 - a) * (adv[key] - prev[key])
                prev[key], adv[key] = adv[key], self._project(ctx, key, v, z, eps[key])
            loss, grad, now = self._loss_grad(ctx, adv, target)
            found, fooled = _pick(now & ~fooled, adv, found), fooled | now
            better = loss > best_loss
            best, best_grad = _pick(better, adv, best), _pick(better, grad, best_grad)
            best_loss = torch.where(better, loss, best_loss)
            history.append(loss)
            since += 1
            if since < k:
                continue
            rises = (torch.stack(history[-k - 1 :]).diff(dim=0) > 0).sum(0)  # (B,)
            stalled = rises <= self.rho * k
            stalled |= ~halved & (loss_at_check >= best_loss)  # kept last time, no better
            halved, loss_at_check, since = stalled, best_loss, 0
            step = torch.where(stalled, step / 2, step)
            adv, grad = _pick(stalled, best, adv), _pick(stalled, best_grad, grad)
            k = max(k - max(int(0.03 * self.steps), 1), max(int(0.06 * self.steps), 1))
        return best, best_loss, found, fooled

    def perturb(self, ctx: AttackContext, x: Tensors) -> Tensors:
        eps = {k: per_key(self.eps, k, "eps") for k in x}
        if all(e == 0 for e in eps.values()):
            return x
        with torch.no_grad():
            logits = ctx.logits(x)
        fooled = (logits.argmax(1) == ctx.labels) == self.targeted  # (B,)
        n = min(self.target_classes, logits.shape[1] - 1)
        runner_up = logits.argsort(dim=1, descending=True)[:, 1 : n + 1]  # (B, n)
        classes = list(runner_up.T) or [None]  # n tensors (B,), or None: untargeted
        out, out_loss = dict(x), torch.full_like(logits[:, 0], float("-inf"))
        for target in [t for t in classes for _ in range(self.restarts)]:
            if bool(fooled.all()):
                break
            best, loss, found, now = self._run(ctx, x, eps, target)
            take = ~fooled & (now | (loss > out_loss))
            out = _pick(take, _pick(now, found, best), out)
            out_loss = torch.where(take & ~now, loss, out_loss)
            fooled = fooled | now
        return out
