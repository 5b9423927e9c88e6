"""Config validation at the edge of every job: each check names the user-facing key (the hydra
path, e.g. ``trainer.max_steps``) and the allowed range, before the job does any work.

    check_int(cfg.max_steps, "trainer.max_steps", low=1)   # "trainer.max_steps must be an integer >= 1, got -5"
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Iterable

from toto_robot.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration value has the wrong type or lies outside its allowed range."""


def _range(low, high, low_open: bool = False) -> str:
    """The allowed range as words, with a leading space (empty when unbounded)."""
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    return f" <= {high}" if high is not None else ""


def check_int(value: Any, key: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within [low, high] (either bound optional)."""
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    if ok and (low is None or value >= low) and (high is None or value <= high):
        return int(value)
    raise ConfigError(f"{key} must be an integer{_range(low, high)}, got {value!r}")


def check_number(value: Any, key: str, low: float | None = None, high: float | None = None, low_open: bool = False) -> float:
    """``value`` as a finite float within the bounds (``low_open``: strictly greater than ``low``)."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (low is None or (value > low if low_open else value >= low)) and (high is None or value <= high):
        return float(value)
    raise ConfigError(f"{key} must be a finite number{_range(low, high, low_open)}, got {value!r}")


def check_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def check_choice(value: Any, key: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value in choices:
        return value
    raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_weights(weights: dict, key: str) -> dict[str, float]:
    """Source -> weight: every weight a finite number >= 0 and at least one of them > 0 (empty is allowed)."""
    if not isinstance(weights, dict):
        raise ConfigError(f"{key} must be a mapping of source name to weight, got {weights!r}")
    out = {str(k): check_number(v, f"{key}.{k}", low=0) for k, v in weights.items()}
    if out and not any(w > 0 for w in out.values()):
        raise ConfigError(f"{key}: at least one weight must be > 0, got {weights}")
    return out
