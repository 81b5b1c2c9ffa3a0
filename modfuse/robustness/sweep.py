"""Sweep: one perturbation swept over strengths, the unit of work of a robustness sweep.

Its own module, below the engine that runs it: nothing here imports the engine, so the
engine imports it and not the other way round (importing any module of the package still runs
``modfuse.robustness``'s ``__init__``, which loads the engine too).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modfuse._registry import ATTACKS

__all__ = ["Sweep"]


@dataclass
class Sweep:
    """One perturbation swept over strengths.

    Args:
        name: Its label in reports, e.g. ``"fg_blur"``.
        attack: An attack or an attack spec; its strength (eps, sigma, std) is overridden.
        strengths: The values to sweep.
        source: Name of another model to compute the perturbation on (transfer); None means
            white-box against each evaluated model itself.

    Examples:
        >>> from modfuse.attacks import GaussianBlur
        >>> Sweep("fg_blur", GaussianBlur(targets=("fg",)), [1, 2, 4]).strengths
        [1, 2, 4]
    """

    name: str
    attack: Any
    strengths: Sequence[float] = field(default_factory=list)
    source: str | None = None

    def __post_init__(self) -> None:
        self.attack = ATTACKS.create(self.attack)
        if not self.strengths:
            raise ValueError(f"sweep {self.name!r} has no strengths")
        repeated = sorted(v for v, n in Counter(map(float, self.strengths)).items() if n > 1)
        if repeated:
            raise ValueError(
                f"sweep {self.name!r}: strengths {list(self.strengths)} repeat {repeated}; "
                "each strength is one column of the results and must appear once"
            )
        if self.attack.strength_param is None and len(self.strengths) > 1:
            raise ValueError(f"{type(self.attack).__name__} has no strength to sweep")
        for v in self.strengths:
            try:  # the attack knows its valid strengths (an SNR in dB may be negative)
                self.attack.check_strength_value(v)
            except (TypeError, ValueError) as err:
                raise ValueError(f"sweep {self.name!r}: strengths: {err}") from None
