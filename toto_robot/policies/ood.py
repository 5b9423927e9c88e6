"""Out-of-distribution monitor: how far a frame's frozen features lie from the policy's training frames.

    ref = fit_reference([feats_ep0, feats_ep1, ...])      # per-episode float32 [T_i, F] pooled features
    ref.save(policy_dir)                                  # policy_dir/ood.safetensors (atomic)
    ref = load_reference(policy_dir)                      # None (and a log line) for a policy saved without one
    monitor = OODMonitor(ref)
    score, average, level = monitor.update(feats)         # per frame; level "ok" | "warn" | "error"

Score. The squared Mahalanobis distance of the frame's pooled features from the training frames' mean,
under a shrinkage covariance (Ledoit-Wolf on the standardised features: well conditioned with fewer
frames than feature dims, each dimension's own variance kept), divided
by the feature dimension, so a typical training frame scores about 1. The average is an exponential
moving average over about ``average_frames`` frames (alpha = 2 / (average_frames + 1)), started at the
episode's first score.

Thresholds. The training episodes are split by episode, seeded: the mean and covariance are fit on
``1 - calib_fraction`` of them, and the held-out rest are scored; the WARN threshold is the
``1 - warn_rate`` quantile of their frame scores (false alarms at ``warn_rate`` of in-distribution
frames), the ERROR threshold the ``1 - error_rate`` quantile. The moving average gets its own two
thresholds, calibrated the same way on the held-out episodes' averaged scores. A quantile finer than
1 / (held-out frames) is the largest held-out score; ``n_calib`` says how many frames set it.

This module imports neither ROS nor the simulator: the policy node, training and the ``ood`` command
all read it.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from toto_robot.errors import DataFormatError, UserError
from toto_robot.utils.io import CheckpointError, atomic_save_tensors

log = logging.getLogger(__name__)

REFERENCE_FILE = "ood.safetensors"


class OODReferenceError(UserError, FileNotFoundError):
    """A job needs the policy's OOD reference and the policy folder has none."""


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Rows [N, F] -> (shrunk covariance [F, F], shrinkage in [0, 1]): Ledoit & Wolf (2004), the estimator
    of sklearn.covariance.LedoitWolf (assume_centered on the centred rows), towards a scaled identity."""
    x = x - x.mean(0)
    n, p = x.shape
    emp = x.T @ x / n  # (F, F)
    mu = np.trace(emp) / p
    x2 = x ** 2
    beta_ = float(np.sum(x2.T @ x2)) / n
    delta_ = float(np.sum(emp ** 2))
    beta = (beta_ / n - delta_ / n) / p
    delta = (delta_ - 2 * mu * np.trace(emp) + p * mu ** 2) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if delta == 0 else beta / delta
    return (1 - shrinkage) * emp + shrinkage * mu * np.eye(p), float(shrinkage)


def shrunk_covariance(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Rows [N, F] -> (covariance [F, F], shrinkage): Ledoit-Wolf on the per-dimension standardised rows, scaled
    back; it shrinks the correlations towards none and keeps each dimension's own variance (pooled features'
    variances span orders of magnitude, and shrinking them towards their mean hides a shift along a quiet one)."""
    std = x.std(0)
    std = np.where(std > 1e-8 * max(float(std.max()), 1e-30), std, max(float(std.max()), 1.0) * 1e-8)  # constant dims: tiny, not zero
    corr, shrinkage = ledoit_wolf(x / std)
    return corr * std[:, None] * std[None, :], shrinkage


def moving_average(scores: np.ndarray, frames: int) -> np.ndarray:
    """One episode's scores [T] -> their exponential moving average [T] over about ``frames`` frames."""
    alpha = 2.0 / (frames + 1)
    out = np.empty(len(scores), np.float64)
    acc = None
    for t, s in enumerate(scores):
        acc = float(s) if acc is None else acc + alpha * (float(s) - acc)
        out[t] = acc
    return out


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """Probability that an out-of-distribution score exceeds an in-distribution one (ties count half):
    the area under the ROC curve of the score as a detector (Mann-Whitney U / (n_in * n_out))."""
    inside, outside = np.asarray(inside, np.float64).ravel(), np.asarray(outside, np.float64).ravel()
    if not len(inside) or not len(outside):
        raise DataFormatError(f"AUROC needs scores on both sides: {len(inside)} in-distribution, {len(outside)} shifted")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([inside, outside]))
    u = ranks[len(inside):].sum() - len(outside) * (len(outside) + 1) / 2
    return float(u / (len(inside) * len(outside)))


@dataclass
class OODReference:
    """Mean [F] and precision [F, F] of the training frames' features, and the calibrated thresholds."""

    mean: np.ndarray
    precision: np.ndarray
    thresholds: dict  # frame_warn, frame_error, average_warn, average_error
    warn_rate: float = 0.01
    error_rate: float = 0.001
    average_frames: int = 10
    info: dict = field(default_factory=dict)  # n_fit, n_calib, episodes, shrinkage, feature

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def score(self, feats) -> np.ndarray:
        """Features [N, F] (or [F]) -> scores float64 [N] (or a float): squared Mahalanobis distance / F."""
        x = np.asarray(feats, np.float64)
        one = x.ndim == 1
        x = x.reshape(-1, x.shape[-1])
        if x.shape[1] != self.dim:
            raise DataFormatError(f"OOD reference was fit on {self.dim}-d features, got {x.shape[1]}-d")
        d = x - self.mean  # (N, F)
        s = np.einsum("nf,fg,ng->n", d, self.precision, d) / self.dim
        return float(s[0]) if one else s

    def level(self, value: float, kind: str = "average") -> str:
        """``ok`` | ``warn`` | ``error`` for a score (``kind="frame"``) or a moving average (``"average"``)."""
        if value > self.thresholds[f"{kind}_error"]:
            return "error"
        return "warn" if value > self.thresholds[f"{kind}_warn"] else "ok"

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / REFERENCE_FILE
        meta = {"thresholds": self.thresholds, "warn_rate": self.warn_rate, "error_rate": self.error_rate,
                "average_frames": self.average_frames, "info": self.info}
        atomic_save_tensors({"mean": torch.from_numpy(self.mean.astype(np.float64)), "precision": torch.from_numpy(self.precision.astype(np.float64))},
                            path, metadata={"ood": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "OODReference":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads(f.metadata()["ood"])
                mean, precision = f.get_tensor("mean").numpy(), f.get_tensor("precision").numpy()
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported as one
            raise CheckpointError(f"{path}: not a readable OOD reference ({type(e).__name__}: {e})") from e
        return cls(mean, precision, meta["thresholds"], meta["warn_rate"], meta["error_rate"], meta["average_frames"], meta["info"])


def fit_reference(episodes: list[np.ndarray], warn_rate: float = 0.01, error_rate: float = 0.001, calib_fraction: float = 0.25,
                  average_frames: int = 10, seed: int = 0, feature: str = "") -> OODReference:
    """Per-episode features [T_i, F] -> a reference fit on some episodes and calibrated on the others (module doc).
    One episode: its first ``1 - calib_fraction`` of frames fit, the rest calibrate (said in the log)."""
    eps = [np.asarray(e, np.float64).reshape(len(e), -1) for e in episodes if len(e)]
    if not eps:
        raise DataFormatError("an OOD reference needs at least one frame of features")
    if not 0 < error_rate < warn_rate < 1:
        raise DataFormatError(f"OOD false-alarm rates need 0 < error_rate < warn_rate < 1, got error {error_rate}, warn {warn_rate}")
    if len(eps) >= 2:
        order = np.random.default_rng(seed).permutation(len(eps))
        n_cal = min(len(eps) - 1, max(1, round(calib_fraction * len(eps))))
        fit, cal = [eps[i] for i in order[n_cal:]], [eps[i] for i in order[:n_cal]]
    else:
        cut = max(1, int(round((1 - calib_fraction) * len(eps[0]))))
        if cut >= len(eps[0]):
            raise DataFormatError(f"one episode of {len(eps[0])} frames: too few to fit an OOD reference and calibrate it")
        log.info("OOD reference: one episode only, its first %d frames fit and the last %d calibrate", cut, len(eps[0]) - cut)
        fit, cal = [eps[0][:cut]], [eps[0][cut:]]
    x = np.concatenate(fit)  # (N_fit, F)
    cov, shrinkage = shrunk_covariance(x)
    ref = OODReference(x.mean(0), np.linalg.pinv(cov, hermitian=True), {}, warn_rate, error_rate, average_frames,
                       {"n_fit": len(x), "n_calib": int(sum(len(c) for c in cal)), "episodes_fit": len(fit), "episodes_calib": len(cal),
                        "shrinkage": shrinkage, "feature": feature, "seed": seed})
    frame = [ref.score(c) for c in cal]
    average = np.concatenate([moving_average(s, average_frames) for s in frame])
    frame = np.concatenate(frame)
    ref.thresholds = {"frame_warn": float(np.quantile(frame, 1 - warn_rate)), "frame_error": float(np.quantile(frame, 1 - error_rate)),
                      "average_warn": float(np.quantile(average, 1 - warn_rate)), "average_error": float(np.quantile(average, 1 - error_rate))}
    return ref


def load_reference(policy_dir: str | Path, logger=None) -> OODReference | None:
    """The reference saved with a policy, or None with a log line saying the monitor is off."""
    path = Path(policy_dir) / REFERENCE_FILE
    say = (logger or log).info
    if not path.is_file():
        say(f"no OOD reference in {policy_dir} ({REFERENCE_FILE}; policies trained before the monitor have none): the OOD monitor is off")
        return None
    ref = OODReference.load(path)
    say(f"OOD monitor on: {ref.dim}-d features, WARN above {ref.thresholds['average_warn']:.3g} and ERROR above "
        f"{ref.thresholds['average_error']:.3g} (moving average over {ref.average_frames} frames; false alarms "
        f"{100 * ref.warn_rate:g}% / {100 * ref.error_rate:g}% of held-out training frames)")
    return ref


class OODMonitor:
    """The moving average of one stream of frames (``reset`` at an episode's start)."""

    def __init__(self, reference: OODReference):
        self.ref = reference
        self.alpha = 2.0 / (reference.average_frames + 1)
        self.average: float | None = None
        self.score = float("nan")

    def reset(self) -> None:
        self.average = None

    def update(self, feats) -> tuple[float, float, str]:
        """One frame's features [F] -> (score, moving average, level of the average)."""
        self.score = s = self.ref.score(np.asarray(feats).reshape(-1))
        self.average = s if self.average is None else self.average + self.alpha * (s - self.average)
        return s, self.average, self.ref.level(self.average)

    @property
    def level(self) -> str:
        return "ok" if self.average is None else self.ref.level(self.average)


@torch.no_grad()
def frame_features(encoder, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """uint8 frames [N, H, W, 3] -> the encoder's pooled features float32 [N, F] (what a BC policy's node
    gets from its one encoder pass: ``Policy.act_with_features``)."""
    encoder.eval()
    out = [encoder(frames[i:i + batch_size]).float().cpu().numpy() for i in range(0, len(frames), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, encoder.feature_dim), np.float32)
