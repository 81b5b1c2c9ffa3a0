"""Studies: the whole robustness protocol for any modalities, declared in one file.

- :mod:`~modfuse.study.schema`: :class:`StudyConfig`, every field of a study;
- :mod:`~modfuse.study.runner`: :class:`Study`, run unit by unit, resumable;
- :mod:`~modfuse.study.units`: the units (train, evaluate) and their keys;
- :mod:`~modfuse.study.work`: what a unit does;
- :mod:`~modfuse.study.results`: seed means, the single-source table, hypotheses;
- :mod:`~modfuse.study.report`: results.csv / .json, report.md, manifest.json;
- :mod:`~modfuse.study.data`: a study's data (a callable, or a kind ``modfuse run`` knows);
- :mod:`~modfuse.study.toy`: a three-modality toy world for examples.
"""

from modfuse.study.runner import Study, StudyChangedError
from modfuse.study.schema import StudyConfig

__all__ = ["Study", "StudyChangedError", "StudyConfig"]
