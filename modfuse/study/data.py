"""A study's data: a ``callable`` returning ``(train, test)``, or a kind ``modfuse run`` knows."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sized
from typing import Any

from modfuse.data.configured import datasets_from_config
from modfuse.study.schema import StudyData

__all__ = ["class_count", "study_data"]


def study_data(data: StudyData, seed: int) -> tuple[Any, Any]:
    """``(train, test)`` for ``seed`` (the study's data seed).

    Raises:
        ValueError: the callable cannot be found or does not return two non-empty datasets.
    """
    if data.callable is None:
        return datasets_from_config(data, None, seed)
    module_name, _, attr = data.callable.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"data.callable {data.callable!r}: {err}") from err
    kwargs = dict(data.kwargs)
    if "seed" in inspect.signature(fn).parameters:
        kwargs["seed"] = seed
    got = fn(**kwargs)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise ValueError(
            f"data.callable {data.callable!r} must return (train, test), got {type(got).__name__}"
        )
    for split, ds in zip(("train", "test"), got):
        if not isinstance(ds, Sized) or len(ds) == 0:
            raise ValueError(f"data.callable {data.callable!r}: the {split} set is empty")
    return got


def class_count(train: Any) -> int:
    """The number of classes of a dataset: its ``classes``, else the largest label + 1."""
    classes = getattr(train, "classes", None)
    if classes is not None:
        return len(classes)
    labels = getattr(train, "labels", None)
    if labels is None:
        labels = [int(train[i]["label"]) for i in range(len(train))]
    return int(max(int(v) for v in labels)) + 1
