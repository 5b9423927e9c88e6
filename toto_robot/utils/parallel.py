"""Run independent jobs (training runs) one after another or in spawned worker processes."""
from __future__ import annotations

import os
from typing import Callable, Iterable


def worker_init(threads: int) -> None:
    """Each worker gets its share of the cores: torch's default (all cores per process) oversubscribes them."""
    import torch

    torch.set_num_threads(threads)


def run_jobs(fn: Callable, jobs: Iterable, workers: int = 1, on_done: Callable[[], None] | None = None) -> None:
    """``fn(job)`` for every job: in this process when ``workers == 1`` (or one job), else in ``workers``
    spawned processes with cores / workers torch threads each. Spawned, not forked: the parent may hold
    rendering contexts and torch's thread pool. A failed job raises its own error; jobs already finished
    keep what they wrote. ``on_done`` is called after each job (a progress bar's update)."""
    jobs = list(jobs)
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            fn(job)
            if on_done:
                on_done()
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=worker_init, initargs=(threads,)) as pool:
        for future in as_completed([pool.submit(fn, job) for job in jobs]):
            future.result()
            if on_done:
                on_done()
