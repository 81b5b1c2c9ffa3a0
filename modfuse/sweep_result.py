"""SweepResult: the rows of a robustness sweep with its sanity flags and checks.

Its own module so that reports can recognise a sweep's result without importing the sweep
engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class SweepResult(list):
    """The rows of a robustness sweep (a list of dicts), with its sanity ``flags`` (the failed
    checks) and ``checks`` (every check of :data:`modfuse.sanity.CHECKS`, each "passed",
    "flagged" or "not run", with what it ran on or why it did not run); None where unknown.
    ``per_class``: per (model, perturbation, strength), the correct answers and items of each
    class and how many answers each class got; ``baselines``: the majority-class and
    uniform-chance accuracies of the items swept (:meth:`modfuse.sweep_tally.Tally.baselines`).

    Examples:
        >>> result = SweepResult([{"model": "m", "accuracy": 0.5}])
        >>> result.flags, result.checks, len(result)
        (None, None, 1)
    """

    def __init__(
        self,
        rows: Iterable[dict[str, Any]] = (),
        flags: list[dict[str, str]] | None = None,
        checks: list[dict[str, str]] | None = None,
        per_class: list[dict[str, Any]] | None = None,
        baselines: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(rows)
        self.flags = flags
        self.checks = checks
        self.per_class = per_class
        self.baselines = baselines
