"""Gaussian blur as a perturbation: batched, separable, per-sample sigma, optional region."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F

from modfuse._registry import register_attack
from modfuse.attacks.base import Attack, AttackContext, ItemStreams, per_key
from modfuse.attacks.checks import check_strength


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """One normalised 1-D Gaussian per sigma: ``(N,) -> (N, 2 * radius + 1)``."""
    t = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    k = torch.exp(-0.5 * (t / sigma.clamp_min(1e-12).unsqueeze(1)) ** 2)  # (N, K)
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(
    x: torch.Tensor, sigma: float | torch.Tensor, truncate: float = 3.0
) -> torch.Tensor:
    """Blur images with a Gaussian, reflect padding, kernel radius ``ceil(truncate * sigma)``.

    Args:
        x: Images ``(B, C, H, W)``.
        sigma: One sigma for all, or one per sample ``(B,)``; 0 leaves a sample unchanged.
        truncate: Kernel half-width in sigmas.

    Examples:
        >>> x = torch.zeros(1, 1, 9, 9); x[0, 0, 4, 4] = 1
        >>> y = gaussian_blur(x, 1.0)
        >>> round(float(y.sum()), 4), bool(y[0, 0, 4, 4] < 1)
        (1.0, True)
    """
    if x.dim() != 4:
        raise ValueError(f"blur needs images (B, C, H, W), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    check_strength(sigma, "sigma")
    sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).flatten()
    if sig.numel() not in (1, b):
        raise ValueError(f"sigma must be a number or one value per sample ({b}), got {sig.numel()}")
    smax = float(sig.max()) if sig.numel() else 0.0
    if smax == 0 or x.numel() == 0:
        return x
    # Reflect padding needs radius < size; larger kernels add nothing visible anyway.
    radius = min(int(math.ceil(truncate * smax)), h - 1, w - 1)
    if radius < 1:
        return x
    # One kernel per sample (a shared sigma is broadcast): (B,) sigmas -> (B, K) kernels.
    sig = sig.expand(b)
    k = gaussian_kernels(sig.clamp_min(1e-6), radius)
    # Cut each kernel at its own radius, so a sample is blurred as if it were alone.
    own = torch.ceil(truncate * sig).clamp(max=radius)  # (B,)
    offsets = torch.arange(-radius, radius + 1, device=x.device).abs()  # (K,)
    k = torch.where(offsets <= own.unsqueeze(1), k, torch.zeros_like(k))
    k = k / k.sum(dim=1, keepdim=True)  # sigma 0 keeps only the centre tap: a delta kernel
    # Depthwise convolution over (1, B*C, H, W), one group per image channel: on CPU this is
    # ~3x faster than torchvision's batched blur (benchmarks/blur.py). The kernel must be
    # contiguous: an expanded (stride-0) weight takes a slow path.
    k = k.repeat_interleave(c, dim=0).contiguous()  # (B*C, K)
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, -1, 1), groups=b * c)
    y = F.pad(y, (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, -1), groups=b * c)
    return y.reshape(b, c, h, w)


def _sigma(sigma: Any) -> Any:
    """``sigma`` checked, a list of two (from YAML or JSON) made a ``(low, high)`` tuple."""
    if isinstance(sigma, (list, tuple)):
        if len(sigma) != 2:
            raise ValueError(
                f"a sigma range must be (low, high), two numbers, got {len(sigma)}: {sigma!r}"
            )
        sigma = tuple(sigma)
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in sigma):
            raise TypeError(f"a sigma range must hold two numbers, got {sigma!r}")
        check_strength(sigma, "sigma")  # both finite and >= 0
        if sigma[0] > sigma[1]:
            raise ValueError(f"a sigma range must be (low, high) with low <= high, got {sigma}")
        return sigma
    check_strength(sigma, "sigma")
    return sigma


@register_attack("blur")
class GaussianBlur(Attack):
    """Gaussian blur of the target images: a corruption, not a gradient attack.

    Args:
        sigma: Blur strength in pixels: a number, per key (``{"fg": 2}``), or a
            ``(low, high)`` range from which one sigma per sample is drawn each call (a list
            of two, as YAML and JSON give it, is taken as that range).
        region: Name of an input key holding a ``(B, 1, H, W)`` mask: only that region is
            blurred (``targets=("image",), region="mask"`` blurs the object inside a raw
            image, leaving its surroundings sharp). The base class's region, with its one
            meaning (:mod:`modfuse.attacks.region`): pixels whose mask is above 0.5 take the
            blurred value, the others keep theirs exactly; the blur itself still reads the
            whole image, so an object's edge mixes in its surroundings as a real blur does.
        truncate: Kernel half-width in sigmas.
        targets: Input keys to blur. Other arguments: see :class:`Attack`.

    Examples:
        >>> import torch
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, num_classes=3)
        >>> x = {"fg": torch.rand(2, 3, 16, 16), "bg": torch.rand(2, 3, 16, 16)}
        >>> out = GaussianBlur(sigma=2.0)(model, x, torch.tensor([0, 1]))
        >>> bool(out["fg"].std() < x["fg"].std()), out["bg"] is x["bg"]
        (True, True)
    """

    strength_param = "sigma"
    norm = "none"
    strength_unit = "sigma"  # pixels

    def __init__(
        self,
        sigma: float | Mapping[str, float] | tuple[float, float] | list[float] = 1.0,
        targets: Sequence[str] = ("fg",),
        region: str | None = None,
        truncate: float = 3.0,
        **kw,
    ) -> None:
        super().__init__(targets, region=region, **kw)
        sigma = _sigma(sigma)
        check_strength(truncate, "truncate")
        if truncate == 0:
            raise ValueError(f"truncate must be > 0, got {truncate}")
        self.sigma, self.truncate = sigma, truncate

    def check_strength_value(self, value: Any) -> None:
        """Raise unless ``value`` is a valid sigma: a number, per-key dict or (low, high)."""
        _sigma(value)

    def with_strength(self, value: Any) -> GaussianBlur:
        """A copy with sigma ``value`` (a list of two is taken as a ``(low, high)`` range)."""
        other = cast(GaussianBlur, super().with_strength(value))
        other.sigma = _sigma(value)
        return other

    def make_params(
        self, x: Mapping[str, torch.Tensor], streams: ItemStreams | None
    ) -> dict[str, dict[str, float | torch.Tensor]]:
        """Every random parameter of one call, drawn once for all targets from ``streams``.

        With a ``(low, high)`` range, one sigma per sample ``(B,)`` is drawn, each from the
        sample's own stream (so it does not depend on the other samples), and the same
        tensor serves every target key: a sample's fg and bg are blurred alike, whatever the
        order or number of the targets. A fixed sigma (shared or per key) draws nothing.

        Args:
            x: The target tensors of the call, ``{key: (B, C, H, W)}``.
            streams: The call's per-item streams (``ctx.items``, :meth:`Attack.item_streams`);
                None will do for a fixed sigma, which draws nothing.

        Returns:
            ``{"sigma": {key: float or (B,) tensor}}``, what :meth:`transform` applies.

        Examples:
            >>> blur = GaussianBlur(sigma=(0.5, 3.0), targets=("fg", "bg"))
            >>> x = {"fg": torch.rand(4, 3, 8, 8), "bg": torch.rand(4, 3, 8, 8)}
            >>> p = blur.make_params(x, ItemStreams(range(4)))
            >>> p["sigma"]["fg"] is p["sigma"]["bg"], tuple(p["sigma"]["fg"].shape)
            (True, (4,))
        """
        if not isinstance(self.sigma, (tuple, list)):
            return {"sigma": {k: per_key(self.sigma, k, "sigma") for k in x}}
        sizes = {k: v.shape[0] for k, v in x.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"a random sigma needs one batch size for all targets, got {sizes}")
        batch = next(iter(sizes.values()), 0)
        if streams is None:
            raise ValueError("a random sigma needs the call's streams (ctx.items), got None")
        if batch != len(streams):
            raise ValueError(f"the targets hold {batch} items; the streams are of {len(streams)}")
        lo, hi = self.sigma
        u = streams.rand(())  # (B,), on the CPU
        sigma = lo + (hi - lo) * u
        return {"sigma": {k: sigma for k in x}}

    def transform(
        self, key: str, x: torch.Tensor, params: Mapping[str, Mapping[str, Any]]
    ) -> torch.Tensor:
        """``x`` (target ``key``) blurred with the sigma that :meth:`make_params` chose."""
        # Outside the region, the base class's clamp puts the clean pixels back.
        return gaussian_blur(x, params["sigma"][key], self.truncate)

    def perturb(self, ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # A fixed sigma draws nothing: no streams, no hash of the items (ctx.items is lazy).
        params = self.make_params(x, ctx.items if isinstance(self.sigma, (tuple, list)) else None)
        return {k: self.transform(k, v, params) for k, v in x.items()}
