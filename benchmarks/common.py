"""Timing helper for the benchmark scripts: median of repeated runs after warm-up."""
from __future__ import annotations

import statistics
import time


def timeit(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
