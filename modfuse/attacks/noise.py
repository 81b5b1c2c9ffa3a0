"""Additive Gaussian noise, at a fixed standard deviation or a target signal-to-noise ratio."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from modfuse._registry import register_attack
from modfuse.attacks.base import Attack, AttackContext, ItemStreams, per_key, per_sample
from modfuse.attacks.checks import check_finite, check_strength


@register_attack("noise")
class GaussianNoise(Attack):
    """``x + std * N(0, 1)``, drawn once per call, each item from its own stream.

    Args:
        std: Noise standard deviation, shared or per key.
        snr_db: If given, the per-sample noise level that yields this signal-to-noise ratio in
            dB (``std = rms(x) / 10 ** (snr_db / 20)``, ``rms`` over the whole sample), instead
            of ``std`` (audio style). The attack's strength is then ``snr_db``: a sweep moves
            it, and since more dB is less noise, ``stronger_when`` is ``"lower"``.
        targets: Input keys to corrupt. Other arguments: see :class:`Attack` (with a
            ``region``, only the pixels inside it get noise).

    Examples:
        >>> import torch
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": {"name": "mlp", "in_dim": 4}}, num_classes=2)
        >>> x = {"fg": torch.zeros(64, 4)}
        >>> out = GaussianNoise(std=0.1, seed=0)(model, x, torch.zeros(64, dtype=torch.long))
        >>> round(float(out["fg"].std()), 1)
        0.1
        >>> snr = GaussianNoise(snr_db=20.0)
        >>> snr.strength_param, snr.stronger_when, snr.with_strength(-3.0).snr_db
        ('snr_db', 'lower', -3.0)
    """

    strength_param = "std"
    norm = "none"
    strength_unit = "std"

    def __init__(
        self,
        std: float | Mapping[str, float] = 0.05,
        targets: Sequence[str] = ("fg",),
        snr_db: float | None = None,
        **kw,
    ) -> None:
        super().__init__(targets, **kw)
        check_strength(std, "std")
        self.std, self.snr_db = std, snr_db
        if snr_db is not None:
            self.check_strength_value(snr_db)  # any sign: noise louder than the signal is < 0 dB
            # The ratio is what this instance uses, so it is what a sweep must move.
            self.strength_param = self.strength_unit = "snr_db"
            self.stronger_when = "lower"

    def check_strength_value(self, value: Any) -> None:
        """Raise unless ``value`` is a valid std (>= 0), or any finite number of dB."""
        if self.snr_db is None:
            super().check_strength_value(value)
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"snr_db must be a number of dB, got {type(value).__name__}")
        check_finite(value, "snr_db")

    def make_params(
        self, x: Mapping[str, torch.Tensor], streams: ItemStreams
    ) -> dict[str, dict[str, float | torch.Tensor]]:
        """Every random parameter of one call, drawn once for all targets from ``streams``.

        Each target gets its own standard-normal noise of its shape: sensor noise is
        independent from one input to another (and two targets may differ in shape). Each
        item draws its noise from its own stream, in sorted key order, so an item's noise
        depends neither on the order in which ``targets`` names the keys nor on the other
        items of the batch. With ``snr_db``, the per-sample std is read off ``x``.

        Args:
            x: The target tensors of the call, ``{key: (B, ...)}``.
            streams: The call's per-item streams (``ctx.items``, :meth:`Attack.item_streams`).

        Returns:
            ``{"noise": {key: tensor like x[key]}, "std": {key: float or (B, 1, ...)}}``, what
            :meth:`transform` applies.

        Examples:
            >>> noise = GaussianNoise(std=0.1, targets=("fg", "bg"))
            >>> x = {"fg": torch.zeros(2, 3), "bg": torch.zeros(2, 3)}
            >>> p = noise.make_params(x, ItemStreams([0, 1]))
            >>> p["std"], bool((p["noise"]["fg"] != p["noise"]["bg"]).all())
            ({'fg': 0.1, 'bg': 0.1}, True)
        """
        for k, v in x.items():
            if v.shape[0] != len(streams):
                raise ValueError(
                    f"target {k!r} holds {v.shape[0]} items; the streams are of {len(streams)}"
                )
        draws = {
            k: streams.randn(x[k].shape[1:], dtype=x[k].dtype).to(x[k].device) for k in sorted(x)
        }
        stds: dict[str, float | torch.Tensor] = {}
        for k, v in x.items():
            if self.snr_db is not None:
                rms = per_sample(v.flatten(1).pow(2).mean(1).sqrt(), v)
                stds[k] = rms / 10 ** (self.snr_db / 20)
            else:
                stds[k] = per_key(self.std, k, "std")
        return {"noise": {k: draws[k] for k in x}, "std": stds}

    def transform(
        self, key: str, x: torch.Tensor, params: Mapping[str, Mapping[str, Any]]
    ) -> torch.Tensor:
        """``x + std * noise`` for target ``key``, with what :meth:`make_params` chose."""
        return x + params["std"][key] * params["noise"][key]

    def perturb(self, ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        params = self.make_params(x, ctx.items)
        return {k: self.transform(k, v, params) for k, v in x.items()}
