"""Robustness sweeps: accuracy of models under perturbations, with sanity checks and
diagnostics.

- :mod:`~modfuse.robustness.sweep`: :class:`Sweep`, one perturbation over strengths;
- :mod:`~modfuse.robustness.engine`: :func:`robustness_sweep`, read top to bottom;
- :mod:`~modfuse.robustness.plan`: what every batch asks of every model, decided once;
- :mod:`~modfuse.robustness.batch`: one batch carried out as planned;
- :mod:`~modfuse.robustness.inputs`: which inputs a model takes, and the views of raw data;
- :mod:`~modfuse.robustness.memo`: features shared within a batch;
- :mod:`~modfuse.robustness.tally`: the running counts;
- :mod:`~modfuse.robustness.resume`: the counts saved after every batch;
- :mod:`~modfuse.robustness.result`: :class:`SweepResult` and the rows;
- :mod:`~modfuse.robustness.sanity`: the checks (flags, row checks, model probes);
- :mod:`~modfuse.robustness.diagnostics`: feature shift and modality reliance;
- :mod:`~modfuse.robustness.stats`: intervals.
"""

from modfuse.robustness.diagnostics import branch_norm_share, feature_shift, modality_reliance
from modfuse.robustness.engine import robustness_sweep
from modfuse.robustness.result import SweepResult
from modfuse.robustness.stats import wilson_interval
from modfuse.robustness.sweep import Sweep

__all__ = [
    "Sweep",
    "SweepResult",
    "branch_norm_share",
    "feature_shift",
    "modality_reliance",
    "robustness_sweep",
    "wilson_interval",
]
