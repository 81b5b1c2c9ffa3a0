"""Checks of the numbers an attack is built with: finite, and inside their valid interval.

A NaN strength passes every comparison (``nan < 0`` is False) and would silently give NaN
inputs or a blur that is not one; an infinite one gives inputs that only clamping bounds.
Both are refused where they enter, naming the argument, what was expected and what came.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch


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
