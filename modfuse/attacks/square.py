"""Square Attack (Andriushchenko et al. 2020, arXiv 1912.00049): L-inf, gradient-free."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from modfuse._registry import register_attack
from modfuse.attacks.base import Attack, AttackContext, per_key, per_sample
from modfuse.attacks.checks import check_count, check_strength

Tensors = dict[str, torch.Tensor]


def square_fraction(p_init: float, i: int, queries: int) -> float:
    """Fraction of the pixels a square covers at iteration ``i``: the paper's halving schedule.

    The schedule is written for 10,000 queries and rescaled to ``queries``.

    Examples:
        >>> [square_fraction(0.8, i, 10_000) for i in (0, 11, 51, 9_000)]
        [0.8, 0.4, 0.2, 0.0015625]
    """
    it = int(i / queries * 10_000)
    bounds = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
    halvings = sum(it > b for b in bounds)
    return p_init if it > 10_000 else p_init / 2**halvings


def _grid(shape: torch.Size) -> tuple[int, int, int, int]:
    """A target's shape seen as images (B, C, H, W): (B, C, L) -> (B, C, 1, L), (B, D) ->
    (B, 1, 1, D), (B, ..., H, W) -> (B, prod(...), H, W)."""
    b, rest = shape[0], tuple(shape[1:])
    if len(rest) >= 3:
        return b, math.prod(rest[:-2]), rest[-2], rest[-1]
    if len(rest) == 2:
        return b, rest[0], 1, rest[1]
    return b, 1, 1, math.prod(rest)


#: Queries whose random numbers each item draws at once: fewer calls, and since every item
#: draws the same amount, what an item draws never depends on the other items.
CHUNK = 32
#: Fresh signs a window may try when the ones drawn would change nothing (the paper's code).
REDRAWS = 10


def _index(u: torch.Tensor, n: int) -> torch.Tensor:
    """Uniform numbers in [0, 1) as integers in ``[0, n)``, shape kept."""
    return (u * n).long().clamp(max=n - 1)


def _plus_minus(u: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Uniform numbers in [0, 1) as +-1 (1 below 0.5), in ``like``'s dtype and device."""
    return ((u < 0.5).to(like.dtype) * 2 - 1).to(like.device)


def _window_on(mask: torch.Tensor, sh: int, sw: int, u: torch.Tensor) -> tuple:
    """Top-left corners (B, 1) of ``sh x sw`` windows, each covering a random pixel of ``mask``.

    ``u``: (B, 3) uniform numbers of each item (the pixel, then its place in the window).
    With a region, a window drawn anywhere would often fall outside it and waste its query.
    """
    b, _, h, w = mask.shape
    weights = mask.flatten(1).double()  # (B, H * W)
    weights[weights.sum(1) == 0] = 1.0  # an empty region: any pixel (nothing will change)
    cdf = weights.cumsum(1)  # (B, H * W)
    # Inverse CDF: the first pixel whose cumulative weight exceeds u * total (weight > 0).
    pixel = torch.searchsorted(cdf, u[:, :1].double() * cdf[:, -1:], right=True)
    pixel = pixel.clamp(max=h * w - 1)  # (B, 1)
    top = (pixel // w - _index(u[:, 1:2], sh)).clamp(0, h - sh)
    left = (pixel % w - _index(u[:, 2:3], sw)).clamp(0, w - sw)
    return top, left


@register_attack("square")
class Square(Attack):
    """Random search over squares of ``+-eps``: no gradients, so gradient masking cannot hide.

    Start: vertical stripes of ``+-eps`` (one sign per column and channel). Then, per query,
    one square window per sample (its side shrinking on the paper's schedule) gets a fresh
    sign per channel; the change is kept if the margin ``z_y - max_{i != y} z_i`` drops (for
    ``targeted=True``, ``max_{i != t} z_i - z_t``). A sample stops once it is fooled. Inputs
    that are not images are searched as ``(B, C, 1, L)`` strips. Each query is one forward
    pass of the whole batch. Every sample draws its stripes, windows and signs from its own
    stream (``ctx.items``, a fixed amount per query), so its search does not depend on the
    other samples of the batch.

    Args:
        eps: L-inf budget, shared or per key.
        queries: Model evaluations per sample, the clean one included.
        p_init: Fraction of the pixels the first squares cover.
        targets: Input keys to attack. Other arguments: see :class:`Attack`, but ``loss``:
            the search follows the logits' margin, as the paper does. With a ``region``, the
            stripes are cut to it and every square covers at least one of its pixels.

    Examples:
        >>> import torch
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, num_classes=3)
        >>> x = {"fg": torch.rand(2, 3, 16, 16), "bg": torch.rand(2, 3, 16, 16)}
        >>> adv = Square(eps=4 / 255, queries=20, seed=0)(model, x, torch.tensor([0, 2]))
        >>> adv["bg"] is x["bg"], float((adv["fg"] - x["fg"]).abs().max()) <= 4 / 255 + 1e-6
        (True, True)
    """

    strength_param = "eps"
    uses_gradients = False
    queries_model = True  # the margin loss of every query comes from the model
    norm = "linf"
    strength_unit = "linf"
    iterative = True

    def __init__(
        self,
        eps: float | Mapping[str, float] = 8 / 255,
        queries: int = 5000,
        p_init: float = 0.8,
        targets: Sequence[str] = ("fg",),
        **kw,
    ) -> None:
        if "loss" in kw:
            raise ValueError("Square follows the logits' margin, as the paper does; got a loss")
        super().__init__(targets, **kw)
        self.check_strength_value(eps)  # >= 0 and at most 1 on [0, 1] pixels
        check_count(queries, "queries", low=2)
        check_strength(p_init, "p_init", high=1.0)
        if p_init == 0:
            raise ValueError("p_init must be in (0, 1], got 0")
        self.eps, self.queries, self.p_init = eps, queries, p_init

    def _margin(self, ctx: AttackContext, x: Tensors, shapes: dict) -> tuple:
        """Margin (B,) and whether the model is fooled (B,) at ``x`` (grid-shaped tensors)."""
        with torch.no_grad():
            logits = ctx.logits({k: v.reshape(shapes[k]) for k, v in x.items()})
        z_y = logits.gather(1, ctx.labels[:, None]).squeeze(1)
        other = logits.scatter(1, ctx.labels[:, None], float("-inf")).amax(1)
        margin = other - z_y if self.targeted else z_y - other
        return margin, (logits.argmax(1) == ctx.labels) == self.targeted

    def perturb(self, ctx: AttackContext, x: Tensors) -> Tensors:
        eps = {k: per_key(self.eps, k, "eps") for k in x}
        if all(e == 0 for e in eps.values()):
            return x
        shapes = {k: v.shape for k, v in x.items()}
        xs = {k: v.reshape(_grid(v.shape)) for k, v in x.items()}  # (B, C, H, W) each
        keys = sorted(xs)  # the order of the draws: not that of the targets
        margin, fooled = self._margin(ctx, xs, shapes)
        best = {}
        for k in keys:
            v = xs[k]
            _, c, _, w = v.shape
            signs = _plus_minus(ctx.items.rand((c, 1, w)), v)  # (B, C, 1, W)
            stripes = ctx.clamp(k, v + eps[k] * signs)
            best[k] = torch.where(per_sample(fooled, v), v, stripes)
        m, now = self._margin(ctx, best, shapes)
        margin, fooled = torch.where(fooled, margin, m), fooled | now
        draws: dict[str, torch.Tensor] = {}
        for i in range(self.queries - 2):
            if bool(fooled.all()):
                break
            if i % CHUNK == 0:  # (B, CHUNK, 3 + REDRAWS * C): window place, then signs
                draws = {
                    k: ctx.items.rand((CHUNK, 3 + REDRAWS * xs[k].shape[1])) for k in keys if eps[k]
                }
            p = square_fraction(self.p_init, i, self.queries)
            cand = {
                k: self._window(ctx, k, v, best[k], eps[k], p, draws[k][:, i % CHUNK])
                if eps[k]
                else best[k]
                for k, v in xs.items()
            }
            m, now = self._margin(ctx, cand, shapes)
            take = ~fooled & ((m < margin) | now)
            best = {k: torch.where(per_sample(take, v), cand[k], v) for k, v in best.items()}
            margin, fooled = torch.where(take, m, margin), fooled | (take & now)
        return {k: best[k].reshape(shapes[k]) for k in x}

    def _window(
        self,
        ctx: AttackContext,
        k: str,
        x: torch.Tensor,
        best: torch.Tensor,
        eps: float,
        p: float,
        u: torch.Tensor,
    ) -> torch.Tensor:
        """``best`` with one random window per sample set to a fresh ``+-eps`` per channel.

        ``u``: (B, 3 + REDRAWS * C) uniform numbers of each sample for this query.
        """
        b, c, h, w = x.shape
        area = p * h * w
        sh = min(max(round(math.sqrt(area)), 1), h)
        sw = min(max(round(area / sh), 1), w)
        u = u.to(x.device)
        if k in ctx.masks:
            top, left = _window_on(ctx.masks[k], sh, sw, u[:, :3])
        else:
            top = _index(u[:, 1:2], h - sh + 1)  # (B, 1)
            left = _index(u[:, 2:3], w - sw + 1)  # (B, 1)
        rows = torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device)
        in_rows = (rows >= top) & (rows < top + sh)  # (B, H)
        in_cols = (cols >= left) & (cols < left + sw)  # (B, W)
        window = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (B, 1, H, W)
        signs = _plus_minus(u[:, 3:], x).view(b, REDRAWS, c, 1, 1)
        cand, redraw = best, torch.ones(b, dtype=torch.bool, device=x.device)
        for j in range(REDRAWS):
            # As the paper's code does: redraw the signs of a window that would change nothing.
            fresh = ctx.clamp(k, x + eps * signs[:, j])
            cand = torch.where(window & per_sample(redraw, x), fresh, cand)
            redraw = ((cand - best).abs() < 1e-7).flatten(1).all(1)  # (B,)
            if not bool(redraw.any()):
                break
        return cand
