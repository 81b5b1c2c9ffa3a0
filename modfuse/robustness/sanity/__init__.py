"""Sanity checks of a robustness evaluation, in the spirit of AutoAttack's: each flag says what
went wrong, what it means and what to do.

- :mod:`~modfuse.robustness.sanity.flags`: the checks' names, :class:`Flag`, attack metadata;
- :mod:`~modfuse.robustness.sanity.rows`: checks read from a sweep's rows, and every check's
  status;
- :mod:`~modfuse.robustness.sanity.checks`: the model probes' checks, and
  :func:`check_model` to run them alone;
- :mod:`~modfuse.robustness.sanity.record`: what a sweep keeps of its first batch for them;
- :mod:`~modfuse.robustness.sanity.probes`: the probes a sweep runs on that record.
"""

from modfuse.robustness.sanity.checks import check_model, dedupe
from modfuse.robustness.sanity.flags import CHECKS, RENAMED, ROW_CHECKS, Flag, attack_meta
from modfuse.robustness.sanity.rows import check_rows, check_statuses, row_checks

__all__ = [
    "CHECKS",
    "RENAMED",
    "ROW_CHECKS",
    "Flag",
    "attack_meta",
    "check_model",
    "check_rows",
    "check_statuses",
    "dedupe",
    "row_checks",
]
