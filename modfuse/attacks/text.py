"""Attacks on text: PGD in embedding space, and discrete token substitution and dropping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, cast

import torch
from torch import nn

from modfuse._registry import register_attack
from modfuse.attacks.base import Attack, AttackContext
from modfuse.attacks.checks import check_count, check_strength
from modfuse.attacks.pgd import PGD
from modfuse.encoders.text import PAD
from modfuse.protocols import TokenEncoder


@register_attack("embedding_pgd")
class EmbeddingPGD(PGD):
    """PGD on the output of a text encoder's embedding layer, not on the tokens.

    Token ids are discrete, so gradients cannot move them; this attack perturbs the word
    embeddings ``(B, L, E)`` inside an eps-ball (L2 per sample by default) and returns them
    in place of the ids. It measures how far the model can be pushed in embedding space: an
    upper bound on what a word-level attacker achieves, not a realistic text edit (see
    :class:`TokenSubstitution` for that). The target's encoder needs an ``embed(ids)`` method
    and must accept embeddings (as :class:`modfuse.encoders.TextCNN` does).

    Args: as :class:`PGD` (``norm`` defaults to ``"l2"``); ``targets`` name text modalities.

    Examples:
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"text": {"name": "text_cnn", "vocab_size": 30, "width": 4}},
        ...                     num_classes=2)
        >>> ids = torch.randint(2, 30, (3, 8))
        >>> adv = EmbeddingPGD(eps=0.5, steps=2, targets=("text",))(model, {"text": ids},
        ...                                                         torch.tensor([0, 1, 0]))
        >>> adv["text"].shape, adv["text"].dtype
        (torch.Size([3, 8, 32]), torch.float32)
    """

    def __init__(
        self,
        eps: float | Mapping[str, float] = 1.0,
        targets: Sequence[str] = ("text",),
        norm: Literal["linf", "l2"] = "l2",
        **kw,
    ) -> None:
        super().__init__(eps=eps, targets=targets, norm=norm, **kw)

    def __call__(self, model: nn.Module, inputs: Mapping[str, torch.Tensor], labels: torch.Tensor):
        embedded = dict(inputs)
        for k in self.targets:
            x = inputs[k]
            if not x.is_floating_point():
                encoder = cast(Mapping[str, nn.Module], model.encoders)[k]
                if not isinstance(encoder, TokenEncoder):
                    raise TypeError(
                        f"encoder of {k!r} has no embed(ids); cannot attack its embeddings"
                    )
                with torch.no_grad():
                    embedded[k] = encoder.embed(x)
        return super().__call__(model, embedded, labels)


class _TokenAttack(Attack):
    strength_param = "rate"
    strength_max = 1.0
    input_kind = "integer"
    norm = "none"
    strength_unit = "rate"  # the fraction of real tokens changed

    def __init__(self, rate: float = 0.1, targets: Sequence[str] = ("text",), **kw) -> None:
        super().__init__(targets, **kw)
        check_strength(rate, "rate", high=1.0)
        self.rate = rate

    def _hit(self, ctx: AttackContext, ids: torch.Tensor) -> torch.Tensor:
        """Which real (non-padding) tokens to change: each with probability ``rate``, drawn
        from each item's own stream (so not depending on the other items)."""
        draw = ctx.items.rand(ids.shape[1:]).to(ids.device)  # (B, L)
        return (draw < self.rate) & (ids != PAD)


@register_attack("token_substitution")
class TokenSubstitution(_TokenAttack):
    """Replace each real token, with probability ``rate``, by a random token id.

    Args:
        rate: Fraction of tokens to replace.
        vocab_size: Ids are drawn from ``[2, vocab_size)``; default: the target encoder's.
        targets: Text modalities. Other arguments: see :class:`Attack`.

    Examples:
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"text": {"name": "text_cnn", "vocab_size": 30}}, num_classes=2)
        >>> ids = torch.randint(2, 30, (4, 50))
        >>> attack = TokenSubstitution(rate=0.5, seed=0)
        >>> out = attack(model, {"text": ids}, torch.zeros(4, dtype=torch.long))
        >>> 0.3 < (out["text"] != ids).float().mean().item() < 0.6
        True
    """

    def __init__(
        self,
        rate: float = 0.1,
        targets: Sequence[str] = ("text",),
        vocab_size: int | None = None,
        **kw,
    ) -> None:
        super().__init__(rate, targets, **kw)
        if vocab_size is not None:
            check_count(vocab_size, "vocab_size", low=3)
        self.vocab_size = vocab_size

    def perturb(self, ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for k in sorted(x):  # the order of the draws: not that of the targets
            ids = x[k]
            encoder = cast(Mapping[str, nn.Module], ctx.model.encoders)[k]
            vocab = self.vocab_size or (
                encoder.vocab_size if isinstance(encoder, TokenEncoder) else None
            )
            if vocab is None or vocab < 3:
                raise ValueError(f"TokenSubstitution needs vocab_size >= 3 for {k!r}, got {vocab}")
            new = ctx.items.randint(2, vocab, ids.shape[1:]).to(ids.device)  # (B, L)
            out[k] = torch.where(self._hit(ctx, ids), new, ids)
        return out


@register_attack("token_drop")
class TokenDrop(_TokenAttack):
    """Replace each real token, with probability ``rate``, by padding (the word is gone).

    Examples:
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"text": {"name": "text_cnn", "vocab_size": 30}}, num_classes=2)
        >>> ids = torch.randint(2, 30, (2, 40))
        >>> out = TokenDrop(rate=1.0)(model, {"text": ids}, torch.zeros(2, dtype=torch.long))
        >>> int(out["text"].abs().sum())
        0
    """

    def perturb(self, ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {  # drawn in sorted key order: not depending on the order of targets
            k: torch.where(self._hit(ctx, x[k]), torch.full_like(x[k], PAD), x[k])
            for k in sorted(x)
        }
