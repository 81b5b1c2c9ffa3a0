"""Additive Gaussian noise, at a fixed standard deviation or a target signal-to-noise ratio."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from modfuse._registry import register_attack
from modfuse.attacks.base import Attack, AttackContext, per_key, per_sample
from modfuse.attacks.checks import check_finite, check_strength


@register_attack("noise")
class GaussianNoise(Attack):
    """``x + std * N(0, 1)``, drawn once per call from the attack's generator.

    Args:
        std: Noise standard deviation, shared or per key.
        snr_db: If given, the per-sample noise level that yields this signal-to-noise ratio in
            dB (``std = rms(x) / 10 ** (snr_db / 20)``), instead of ``std`` (audio style).
        targets: Input keys to corrupt. Other arguments: see :class:`Attack`.

    Examples:
        >>> import torch
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": {"name": "mlp", "in_dim": 4}}, num_classes=2)
        >>> x = {"fg": torch.zeros(64, 4)}
        >>> out = GaussianNoise(std=0.1, seed=0)(model, x, torch.zeros(64, dtype=torch.long))
        >>> round(float(out["fg"].std()), 1)
        0.1
    """

    strength_param = "std"

    def __init__(
        self,
        std: float | Mapping[str, float] = 0.05,
        targets: Sequence[str] = ("fg",),
        snr_db: float | None = None,
        **kw,
    ) -> None:
        super().__init__(targets, **kw)
        check_strength(std, "std")
        if snr_db is not None:
            check_finite(snr_db, "snr_db")  # any sign: noise louder than the signal is < 0 dB
        self.std, self.snr_db = std, snr_db

    def perturb(self, ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in x.items():
            noise = torch.randn(v.shape, generator=ctx.generator, dtype=v.dtype).to(v.device)
            if self.snr_db is not None:
                rms = per_sample(v.flatten(1).pow(2).mean(1).sqrt(), v)
                std: float | torch.Tensor = rms / 10 ** (self.snr_db / 20)
            else:
                std = per_key(self.std, k, "std")
            out[k] = v + std * noise
        return out
