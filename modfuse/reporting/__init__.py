"""Reports of a robustness sweep: tables, plots, the run's manifest, and ``write_report``.

- :mod:`~modfuse.reporting.report`: :func:`write_report` (results.csv / .json, report.md);
- :mod:`~modfuse.reporting.tables`: accuracy tables, seed means, units;
- :mod:`~modfuse.reporting.plots`: accuracy against strength, feature shift, training curves;
- :mod:`~modfuse.reporting.manifest`: versions, hardware and hashes a run records.
"""

from modfuse.reporting.manifest import environment
from modfuse.reporting.report import accuracy_tables, read_baselines, seed_means, write_report

__all__ = ["accuracy_tables", "environment", "read_baselines", "seed_means", "write_report"]
