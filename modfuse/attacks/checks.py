"""Checks of the numbers an attack is built with: finite, and inside their valid interval.

A NaN strength passes every comparison (``nan < 0`` is False) and would silently give NaN
inputs or a blur that is not one; an infinite one gives inputs that only clamping bounds.
Both are refused where they enter, naming the argument, what was expected and what came.
:func:`check_call` checks what an attack is called with, before the model runs.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from modfuse.attacks.context import RANGE_TOLERANCE, ContextAttack, Range
from modfuse.protocols import MultimodalModel
from modfuse.validation import check_finite as check_finite_tensor


def _numbers(value: Any, what: str) -> list[float]:
    """Every number in a strength: a number, per-key dict, (low, high) range or tensor."""
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{what} must hold real numbers, got a {value.dtype} tensor")
        flat = value.detach().double().flatten()
        if not bool(torch.isfinite(flat).all()):
            bad = flat[~torch.isfinite(flat)][0].item()
            return [bad]  # reported as got nan / inf
        return [flat.min().item(), flat.max().item()] if flat.numel() else []
    if isinstance(value, Mapping):
        return [x for v in value.values() for x in _numbers(v, what)]
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _numbers(v, what)]
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return [float(value)]
    raise TypeError(
        f"{what} must be a number, a per-key dict, a (low, high) range or a tensor, "
        f"got {type(value).__name__}"
    )


def check_finite(value: Any, what: str) -> None:
    """Raise ValueError if any number in ``value`` is NaN or infinite.

    Examples:
        >>> check_finite(-3.0, "snr_db")
        >>> check_finite(float("nan"), "snr_db")
        Traceback (most recent call last):
        ...
        ValueError: snr_db must be a finite number, got nan
    """
    for x in _numbers(value, what):
        if not math.isfinite(x):
            raise ValueError(f"{what} must be a finite number, got {x}")


def check_strength(value: Any, what: str, high: float = math.inf) -> None:
    """Raise unless every number in ``value`` is finite and in ``[0, high]``.

    ``value`` is a strength as attacks take it: a number, a per-key dict (``{"fg": 8/255}``),
    a ``(low, high)`` range of random strengths, or a per-sample tensor.

    Raises:
        ValueError: a number is NaN, infinite, negative or above ``high``.
        TypeError: ``value`` is none of the above.

    Examples:
        >>> check_strength({"fg": 0.1, "bg": 0.0}, "eps")
        >>> check_strength({"fg": float("inf")}, "eps")
        Traceback (most recent call last):
        ...
        ValueError: eps must be a finite number >= 0, got inf (in {'fg': inf})
        >>> check_strength(-1, "sigma")
        Traceback (most recent call last):
        ...
        ValueError: sigma must be >= 0, got -1
    """
    expected = "a finite number >= 0" + ("" if math.isinf(high) else f" and <= {high:g}")
    for x in _numbers(value, what):
        if not math.isfinite(x):
            where = "" if isinstance(value, numbers.Real) else f" (in {value})"
            raise ValueError(f"{what} must be {expected}, got {x}{where}")
        if x < 0:
            raise ValueError(f"{what} must be >= 0, got {value}")
        if x > high:
            raise ValueError(f"{what} must be in [0, {high:g}], got {value}")


def _radii(value: Any, key: str, what: str) -> list[float]:
    """The numbers of a strength that apply to target ``key`` (a per-key dict's entry)."""
    if isinstance(value, Mapping):
        return _numbers(value[key], what) if key in value else []
    return _numbers(value, what)


def check_linf_radius(value: Any, what: str, ranges: Mapping[str, Range]) -> None:
    """Raise unless an L-inf radius fits the range of each target: at most its width.

    A radius larger than the whole range moves nothing more than the clamp allows: on [0, 1]
    pixels, ``eps=8`` was meant as ``8/255``. ``ranges``: ``{target: (low, high)}``, None
    for a target without a bound (any radius).

    Raises:
        ValueError: a radius is larger than the width of its target's range; on [0, 1]
            pixels the message suggests the value divided by 255.

    Examples:
        >>> check_linf_radius(8 / 255, "eps", {"fg": (0.0, 1.0)})
        >>> check_linf_radius(8, "eps", {"fg": (0.0, 255.0), "vec": None})
        >>> check_linf_radius(8, "eps", {"fg": (0.0, 1.0)})
        Traceback (most recent call last):
        ...
        ValueError: eps 8 is an L-inf radius on [0, 1] pixels; did you mean 8/255 = 0.0314? ...
    """
    for key, r in ranges.items():
        if r is None:
            continue
        width = float(r[1]) - float(r[0])
        for x in _radii(value, key, what):
            if x <= width:
                continue
            if (float(r[0]), float(r[1])) == (0.0, 1.0):
                hint = f"; did you mean {x:g}/255 = {x / 255:.4f}?" if x <= 255 else "."
                raise ValueError(
                    f"{what} {x:g} is an L-inf radius on [0, 1] pixels{hint} It must be in "
                    f"[0, 1] for target {key!r} (an input on another scale: declare "
                    f"ranges={{{key!r}: (low, high)}}, or None for no bound)"
                )
            raise ValueError(
                f"{what} {x:g} is an L-inf radius on target {key!r}, whose declared range is "
                f"[{r[0]:g}, {r[1]:g}]; it must be in [0, {width:g}] (the range's width)"
            )


def check_count(value: Any, what: str, low: int = 1) -> None:
    """Raise unless ``value`` is an integer ``>= low`` (NaN, inf and 2.5 steps are refused).

    Examples:
        >>> check_count(float("inf"), "steps")
        Traceback (most recent call last):
        ...
        ValueError: steps must be an integer >= 1, got inf
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value}")


def _kind(x: Any) -> str:
    """What ``x`` is, for a message: "a torch.uint8 tensor", or its type's name."""
    return f"a {x.dtype} tensor" if torch.is_tensor(x) else type(x).__name__


def check_call(attack: ContextAttack, model: nn.Module, inputs: Any, labels: Any) -> None:
    """Raise unless ``attack(model, inputs, labels)`` can run: keys, dtypes, ranges, labels.

    The region's mask is checked apart, by :func:`modfuse.attacks.region.region_masks`.
    """
    if not isinstance(inputs, Mapping):
        raise TypeError(f"inputs must be a dict of tensors, got {type(inputs).__name__}")
    multimodal = model if isinstance(model, MultimodalModel) else None
    accepted = multimodal.input_keys() if multimodal is not None else list(inputs)
    for k in attack.targets:
        if k not in accepted:
            raise KeyError(
                f"target {k!r} is not an input of the model; it takes {sorted(accepted)}"
            )
        if k not in inputs:
            raise KeyError(f"target {k!r} missing from the inputs; got {sorted(inputs)}")
    for k, v in inputs.items():
        if torch.is_tensor(v):
            check_finite_tensor(k, v, what="input")
    for k in attack.targets:
        x = inputs[k]
        if attack.input_kind == "any":
            continue
        if attack.input_kind == "integer":
            if not torch.is_tensor(x) or x.is_floating_point() or x.is_complex():
                raise TypeError(
                    f"target {k!r} must be an integer tensor (token ids), got {_kind(x)}"
                )
            continue
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise TypeError(f"target {k!r} must be a floating-point tensor, got {_kind(x)}")
        r = attack.range_of(k, x)
        if r is not None and x.numel():
            lo, hi = float(x.min()), float(x.max())
            if lo < r[0] - RANGE_TOLERANCE or hi > r[1] + RANGE_TOLERANCE:
                raise ValueError(
                    f"target {k!r} has values in [{lo:.4g}, {hi:.4g}], outside its declared "
                    f"range {r}; scale the input or pass ranges={{{k!r}: (low, high)}}"
                )
    if multimodal is not None:
        multimodal.check_labels(labels)
    batch = inputs[attack.targets[0]].shape[0]
    if not torch.is_tensor(labels) or labels.shape != (batch,):
        shape = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise ValueError(f"labels must be a tensor of shape ({batch},), got {shape}")
    if attack.region is not None and attack.input_kind != "real":
        raise ValueError(
            f"region needs an attack on real-valued images; {type(attack).__name__} takes "
            f"{attack.input_kind!r} inputs"
        )
