"""Timing helper shared by the benchmarks: median of repeated runs after a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_times(
    cases: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 1
) -> dict[str, list[float]]:
    """Every wall time of each case, measured round-robin so that drift hits all alike."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_medians(
    cases: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 1
) -> dict[str, float]:
    """Median wall time of each case, measured round-robin so that drift hits all alike."""
    times = interleaved_times(cases, repeats, warmup)
    return {name: statistics.median(v) for name, v in times.items()}
