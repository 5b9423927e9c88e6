"""Timing helpers for the benchmark scripts: repeated runs after warm-up."""
from __future__ import annotations

import statistics
import time


def call_times(fn, repeat: int = 5, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeat`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def timeit(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median seconds per call."""
    return statistics.median(call_times(fn, repeat, warmup))
