"""Intervals and paired tests for success rates and probe accuracies.

* ``wilson_interval``: the 95% Wilson score interval of a binomial proportion (sound at 0/n and n/n).
* ``mcnemar_exact``: two encoders scored on the same items (the same validation images, or the same
  seeded evaluation episodes) compared pair by pair; only the items where they disagree carry
  evidence, and under "no difference" each disagreement is a fair coin (exact two-sided binomial test).
* ``group_folds``: K folds that keep whole groups (episodes) together, for cross-validation by episode
  (ridge probes on robot frames, behaviour cloning judged on held-out episodes).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from toto_robot.errors import DataFormatError


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (sound at 0/n and n/n, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if successes == 0 else low), (1.0 if successes == n else high)  # exact at 0/n and n/n, not 1 - 1e-16


def mcnemar_exact(a: Sequence[int], b: Sequence[int]) -> dict:
    """Paired outcomes (1 = right/success) of A and B on the same items -> ``{n, a, b, a_only, b_only, p}``:
    ``a_only`` items only A got right, ``b_only`` only B, ``p`` the exact two-sided McNemar p-value."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need the same items: {len(a)} vs {len(b)}")
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    return {"n": len(a), "a": int(sum(map(bool, a))), "b": int(sum(map(bool, b))), "a_only": a_only, "b_only": b_only,
            "p": mcnemar_p(a_only, b_only)}


def mcnemar_p(a_only: int, b_only: int) -> float:
    """The exact two-sided McNemar p-value of ``a_only`` items only A got right against ``b_only`` only B got right (discordant
    counts, e.g. summed over runs on the same items)."""
    n = a_only + b_only
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2 ** n if n else 1.0
    return min(1.0, 2 * tail)


def group_folds(groups: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``min(folds, #groups)`` (train, test) index pairs; whole groups go to the test fold with the fewest
    frames so far, largest group first (sklearn's GroupKFold assignment)."""
    uniq, counts = np.unique(groups, return_counts=True)
    if len(uniq) < 2:
        raise DataFormatError(f"grouped cross-validation needs at least 2 episodes, got {len(uniq)}")
    k = min(folds, len(uniq))
    load = np.zeros(k, np.int64)
    fold_of = {}
    for i in np.argsort(-counts, kind="stable"):
        f = int(load.argmin())
        fold_of[uniq[i]] = f
        load[f] += counts[i]
    which = np.array([fold_of[g] for g in groups])
    return [(np.flatnonzero(which != f), np.flatnonzero(which == f)) for f in range(k)]
