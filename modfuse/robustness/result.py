"""SweepResult: the rows of a robustness sweep with its sanity flags and checks.

Below the engine (it imports no engine module); :func:`sweep_rows` turns a sweep's counts
into its rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from modfuse.robustness.sanity.checks import attack_meta
from modfuse.robustness.stats import wilson_interval
from modfuse.robustness.sweep import Sweep
from modfuse.robustness.tally import Tally


class SweepResult(list):
    """The rows of a robustness sweep (a list of dicts), with its sanity ``flags`` (the failed
    checks) and ``checks`` (every check of :data:`modfuse.robustness.sanity.CHECKS`, each "passed",
    "flagged" or "not run", with what it ran on or why it did not run); None where unknown.
    ``per_class``: per (model, perturbation, strength), the correct answers and items of each
    class and how many answers each class got; ``baselines``: the majority-class and
    uniform-chance accuracies of the items swept (:meth:`modfuse.robustness.tally.Tally.baselines`).

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


#: The attack metadata of a clean row.
CLEAN_META = {"norm": "none", "unit": "", "iterative": False}


def sweep_rows(sweeps: Sequence[Sweep], models: Sequence[str], tally: Tally) -> list[dict]:
    """One row per (model, point) of a finished sweep, the clean rows first, in the order of
    ``sweeps`` and their strengths (see :func:`modfuse.robustness.robustness_sweep`)."""
    points: list[tuple[Sweep | None, str, float]] = [(None, "clean", 0.0)] + [
        (s, s.name, float(v)) for s in sweeps for v in s.strengths
    ]
    total = tally.total
    rows = []
    for s, p, v in points:
        meta = attack_meta(s.attack) if s else CLEAN_META
        for n in models:
            c = tally.correct[(n, p, v)]
            lo, hi = wilson_interval(c, total)
            rows.append(
                {
                    "model": n,
                    "perturbation": p,
                    "attack": type(s.attack).__name__ if s else "none",
                    "targets": "+".join(s.attack.targets) if s else "",
                    "strength": v,
                    "source": (s.source or "") if s else "",
                    "correct": c,
                    "n": total,
                    "accuracy": c / total if total else float("nan"),
                    "ci_low": lo,
                    "ci_high": hi,
                    "norm": meta["norm"],
                    "unit": meta["unit"],
                    "iterative": meta["iterative"],
                }
            )
    return rows
