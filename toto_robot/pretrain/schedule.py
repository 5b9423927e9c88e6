"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_lr``."""
from __future__ import annotations

import math


def lr_at(step: int, base_lr: float, warmup: int, total: int, min_lr: float = 0.0) -> float:
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))
