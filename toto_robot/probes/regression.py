"""Continuous targets (e.g. end-effector xyz) from frozen features: ridge regression cross-validated with
folds grouped by episode (GroupKFold semantics: no episode has frames on both sides of a fold).

    rows = regression_sweep(encoder, data, poolings=("average", "spatial2"), out_dir="runs/probe/x")
    rows[i]["r2"], rows[i]["raw_pixels_r2"]          # data: toto_robot.probes.robot_frames.FrameTargets

Poolings of a layer's tokens: ``average`` (mean over tokens, the paper's cheap read-out) and
``spatial<g>`` (adaptive average over the frame's token grid to g x g cells, flattened: it keeps the
*where* that a position target needs). The raw-pixel baseline regresses the frames themselves,
centre-cropped and resized to 8 x 8 x 3 (192 numbers).

Ridge: features are standardised with the mean and std of all frames (no targets involved); each
fold's intercept is its training mean; the penalty is chosen per outer fold by an inner grouped CV over
the training episodes only, so test episodes never pick it. The dual (kernel) form fits features wider
than the number of frames. R^2 is computed on the out-of-fold predictions of all frames, per target
column, then averaged over columns (1 = perfect, 0 = no better than the mean, below 0 = worse).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from toto_robot.encoders.base import Encoder, resize_frames_u8
from toto_robot.encoders.features import pooled_features
from toto_robot.errors import DataFormatError
from toto_robot.probes.robot_frames import FrameTargets
from toto_robot.utils.io import atomic_save_json, atomic_write_csv
from toto_robot.utils.stats import group_folds
from toto_robot.utils.plots import pyplot, save_figure

ALPHAS = np.logspace(-6, 3, 10)  # ridge penalties, relative to the mean squared norm of a centred training row
RAW_PIXELS = 8  # the raw-pixel baseline's frames are RAW_PIXELS x RAW_PIXELS x 3


def ridge_predictions(K: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, alphas) -> np.ndarray:
    """Ridge on a linear kernel K = X X^T [N, N]: fit rows ``train`` (intercept = their mean), predict rows
    ``test`` for every penalty -> [len(alphas), n_test, D]."""
    Ktr, Kte = K[np.ix_(train, train)], K[np.ix_(test, train)]  # (n, n), (m, n)
    r, c = Ktr.mean(0), Ktr.mean()
    Ktr = Ktr - r[None] - r[:, None] + c  # kernel of the training rows centred on their mean
    Kte = Kte - Kte.mean(1, keepdims=True) - r[None] + c  # test rows centred on the training mean
    mu = y[train].mean(0)
    lam, Q = np.linalg.eigh(Ktr)  # Ktr = Q diag(lam) Q^T
    lam = np.clip(lam, 0, None)
    scale = lam.mean() if lam.mean() > 0 else 1.0
    Qy = Q.T @ (y[train] - mu)  # (n, D)
    A = Kte @ Q  # (m, n)
    return np.stack([A @ (Qy / (lam + a * scale)[:, None]) + mu for a in alphas])


def r2_per_column(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """[N, D] targets and predictions -> R^2 of each column [D]."""
    return 1 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def ridge_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5, inner_folds: int = 3, alphas=ALPHAS) -> dict:
    """Out-of-fold R^2 of ridge regression x [N, F] -> y [N, D] (or [N]), folds grouped by ``groups`` [N].

    Returns ``{"r2": mean over columns, "r2_per_target": [D], "alphas": penalty chosen per fold, "pred": [N, D]}``.
    """
    y = np.asarray(y, np.float64)
    y = y[:, None] if y.ndim == 1 else y  # (N, D)
    groups = np.asarray(groups)
    if not len(x) == len(y) == len(groups):
        raise ValueError(f"ridge_cv: {len(x)} feature rows, {len(y)} targets and {len(groups)} groups must match")
    if len(np.unique(groups)) < 3:
        raise DataFormatError(f"ridge_cv needs at least 3 episodes (an inner split of 2 to choose the penalty, 1 to test), "
                         f"got {len(np.unique(groups))}")
    constant = np.flatnonzero(y.std(0) == 0).tolist()
    if constant:
        raise DataFormatError(f"target column(s) {constant} are constant over all frames: R^2 is undefined")
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    std = x.std(0)
    x = (x - x.mean(0)) / np.where(std > 0, std, 1.0)  # standardised features (N, F)
    K = x @ x.T  # (N, N)
    var = y.var(0)  # each column's squared error counts relative to its spread when choosing the penalty
    pred, chosen = np.empty_like(y), []
    for train, test in group_folds(groups, folds):
        err = np.zeros(len(alphas))
        for itr, ite in group_folds(groups[train], inner_folds):
            p = ridge_predictions(K, y, train[itr], train[ite], alphas)  # (A, m, D)
            err += (((p - y[train[ite]][None]) ** 2) / var).sum((1, 2))
        best = float(alphas[int(err.argmin())])
        pred[test] = ridge_predictions(K, y, train, test, [best])[0]
        chosen.append(best)
    per = r2_per_column(y, pred)
    return {"r2": float(per.mean()), "r2_per_target": per.tolist(), "alphas": chosen, "pred": pred}


def raw_pixels(frames: np.ndarray, size: int = RAW_PIXELS) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float32 [N, size*size*3] in [0, 1]: centre crop, resize, flatten."""
    small = resize_frames_u8(torch.from_numpy(np.ascontiguousarray(frames)), size)  # (N, size, size, 3)
    return small.reshape(len(frames), -1).float().div(255).numpy()


def raw_pixels_r2(data: FrameTargets, folds: int = 5, inner_folds: int = 3) -> float:
    """R^2 of the raw-pixel baseline (frames at 8 x 8 x 3) on ``data``, same folds and ridge as the encoders."""
    return ridge_cv(raw_pixels(data.frames), data.targets, data.groups, folds, inner_folds)["r2"]


def regression_sweep(encoder: Encoder, data: FrameTargets, layers: list[int] | None = None, poolings=("average", "spatial2"),
                     folds: int = 5, inner_folds: int = 3, batch_size: int = 32, out_dir: str | Path | None = None) -> list[dict]:
    """R^2 of ridge regression from each (layer, pooling) of ``encoder`` to ``data.targets``, each row with the
    raw-pixel baseline's R^2 beside it; with ``out_dir`` writes ``regression.csv``, ``.png`` and ``result.json``."""
    layers = list(range(1, encoder.num_layers + 1)) if layers is None else list(layers)
    raw = raw_pixels_r2(data, folds, inner_folds)
    feats = pooled_features(encoder, data.frames, layers, poolings, batch_size)
    rows = []
    for p in poolings:
        for l in layers:
            res = ridge_cv(feats[(l, p)], data.targets, data.groups, folds, inner_folds)
            rows.append({"encoder": encoder.name, "dataset": data.name, "layer": l, "depth": l / encoder.num_layers, "pooling": p,
                         "r2": res["r2"], "raw_pixels_r2": raw,
                         **{f"r2 {n}": v for n, v in zip(data.target_names, res["r2_per_target"])}})
    if out_dir is not None:
        write_regression(rows, Path(out_dir))
    return rows


def best_regression_row(rows: list[dict], pooling: str | None = None) -> dict:
    rows = [r for r in rows if pooling is None or r["pooling"] == pooling]
    return max(rows, key=lambda r: (r["r2"], -abs(r["depth"] - 0.5)))


def write_regression(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(rows, out / "regression.csv")
    best = {p: best_regression_row(rows, p) for p in sorted({r["pooling"] for r in rows})}
    atomic_save_json({"best": best, "raw_pixels_r2": rows[0]["raw_pixels_r2"]}, out / "result.json")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for pooling in sorted({r["pooling"] for r in rows}):
        pts = sorted((r["depth"], r["r2"]) for r in rows if r["pooling"] == pooling)
        ax.plot(*zip(*pts), marker="o", label=f"{rows[0]['encoder']} / {pooling}")
    ax.axhline(rows[0]["raw_pixels_r2"], color="grey", ls=":", label=f"raw pixels {RAW_PIXELS}x{RAW_PIXELS}x3")
    ax.set_xlabel("relative depth of probed layer")
    ax.set_ylabel("R^2 (out-of-fold, by episode)")
    ax.set_title(f"ridge regression: {rows[0]['dataset']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, out / "regression.png")
