"""Weighted sampling over datasets (paper Sec. 4.1: ImageNet 20%, Kinetics 10%, Ego4D 10%,
HowTo100M 60%); here the sources are whatever shard sources a run has."""
from __future__ import annotations

import numpy as np

from toto_robot.utils.config import ConfigError

PAPER_WEIGHTS = {"imagenet": 0.2, "kinetics600": 0.1, "ego4d": 0.1, "howto100m": 0.6}


class MixtureSampler:
    """Infinite stream of global dataset indices: pick a source by weight, then a sequence of it.

    ``state_dict()``/``load_state_dict()`` make the stream resumable (checkpointed by the trainer).
    """

    def __init__(self, indices_by_source: dict[str, np.ndarray], weights: dict[str, float] | None = None, seed: int = 0):
        if not indices_by_source:
            raise ConfigError("mixture sampler needs at least one non-empty source")
        weights = dict(weights or {s: 1.0 for s in indices_by_source})
        unknown = set(weights) - set(indices_by_source)
        if unknown:
            raise ConfigError(f"mixture weights name sources that the data lacks: {sorted(unknown)} (have {sorted(indices_by_source)})")
        bad = {s: w for s, w in weights.items() if not (np.isfinite(w) and w >= 0)}
        if bad:
            raise ConfigError(f"mixture weights must be finite numbers >= 0, got {bad}")
        self.sources = [s for s in sorted(indices_by_source) if weights.get(s, 0) > 0 and len(indices_by_source[s])]
        if not self.sources:
            raise ConfigError("every mixture weight is zero or names an empty source")
        w = np.array([weights[s] for s in self.sources], dtype=np.float64)
        self.probs = w / w.sum()
        self.indices = {s: np.asarray(indices_by_source[s]) for s in self.sources}
        self.seed = seed
        self.drawn = 0
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int) -> np.ndarray:
        src = self.rng.choice(len(self.sources), size=n, p=self.probs)
        out = np.empty(n, dtype=np.int64)
        for k, s in enumerate(self.sources):
            sel = src == k
            out[sel] = self.rng.choice(self.indices[s], size=int(sel.sum()))
        self.drawn += n
        return out

    def state_dict(self) -> dict:
        return {"seed": self.seed, "drawn": self.drawn, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.drawn = state["seed"], state["drawn"]
        self.rng = np.random.default_rng(self.seed)
        self.rng.bit_generator.state = state["rng"]
