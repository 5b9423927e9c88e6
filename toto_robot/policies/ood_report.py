"""Offline OOD scores of recorded frames (``toto-robot ood``): every frame of a demo folder's episodes (any format
``open_demos`` reads), of each video in a folder, or of a folder of images (one sequence, in name order), scored
against the reference saved with a policy, with the moving average the node would publish.

    summary = score_recordings(load_policy(d), load_reference(d), "runs/demos/cabinet", Path("runs/ood"))

Writes ``scores.csv`` (recording, frame, score, average, level), ``ood.json`` (per recording: frames, mean and
max score, share of frames whose average is above WARN / ERROR; the thresholds) and ``ood_scores.png`` (the
averages over time, the thresholds as lines).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np

from toto_robot.constants import OBS_IMAGE
from toto_robot.errors import InputNotFoundError
from toto_robot.policies.ood import OODReference, frame_features, moving_average
from toto_robot.utils.io import atomic_save_json, atomic_write_csv
from toto_robot.utils.plots import pyplot, save_figure

log = logging.getLogger(__name__)


def recordings(root: str | Path, stride: int = 1, max_frames: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(name, uint8 frames [T, H, W, 3]) per episode or video, every ``stride``-th frame, at most ``max_frames``."""
    from toto_robot.data.demos import DemoFormatError
    from toto_robot.data.formats import open_demos
    from toto_robot.data.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, iter_videos, list_media, read_image

    root = Path(root)
    if not root.exists():
        raise InputNotFoundError(f"frames={root}: no such file or folder")
    try:
        ds = open_demos(root) if root.is_dir() else None
    except DemoFormatError:
        ds = None
    if ds is not None:
        for i in range(len(ds)):
            yield f"episode_{i:04d}", np.asarray(ds[i][OBS_IMAGE])[::stride][:max_frames]
        return
    videos = list_media(root, VIDEO_SUFFIXES)
    for path, frames in iter_videos(videos, max_frames=None if max_frames is None else max_frames * stride):
        yield path.stem, frames[::stride][:max_frames]
    images = list_media(root, IMAGE_SUFFIXES)[::stride][:max_frames]
    if images:
        from PIL import Image

        first = read_image(images[0])
        size = (first.shape[1], first.shape[0])
        yield root.stem, np.stack([np.asarray(Image.fromarray(read_image(p)).resize(size)) for p in images])
    if not videos and not images:
        raise InputNotFoundError(f"frames={root} holds no demo dataset (demo folder, LeRobot, RLDS), video or image")


def score_frames(encoder, ref: OODReference, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One recording's frames -> (scores [T], moving averages [T]), as the node computes them frame by frame."""
    scores = ref.score(frame_features(encoder, frames))
    return scores, moving_average(scores, ref.average_frames)


def score_recordings(policy, ref: OODReference, frames: str | Path, out_dir: Path, stride: int = 1, max_frames: int | None = None) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, per = [], []
    curves: dict[str, np.ndarray] = {}
    for name, x in recordings(frames, stride, max_frames):
        if not len(x):
            continue
        scores, average = score_frames(policy.encoder, ref, x)
        curves[name] = average
        rows += [{"recording": name, "frame": t * stride, "score": float(s), "average": float(a), "level": ref.level(float(a))}
                 for t, (s, a) in enumerate(zip(scores, average))]
        per.append({"recording": name, "frames": len(x), "mean_score": float(scores.mean()), "max_score": float(scores.max()),
                    "warn_share": float(np.mean(average > ref.thresholds["average_warn"])),
                    "error_share": float(np.mean(average > ref.thresholds["average_error"]))})
        log.info("%s: %d frames, mean score %.3g, average above WARN on %.0f%%", name, len(x), scores.mean(), 100 * per[-1]["warn_share"])
    if not rows:
        raise InputNotFoundError(f"frames={frames}: no frame to score")
    atomic_write_csv(rows, out_dir / "scores.csv", ["recording", "frame", "score", "average", "level"])
    summary = {"frames": str(frames), "stride": stride, "thresholds": ref.thresholds, "warn_rate": ref.warn_rate, "error_rate": ref.error_rate,
               "average_frames": ref.average_frames, "recordings": per}
    atomic_save_json(summary, out_dir / "ood.json")
    plot_scores(curves, ref, out_dir / "ood_scores.png", stride)
    return summary


def plot_scores(curves: dict[str, np.ndarray], ref: OODReference, path: Path, stride: int = 1) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    for name, a in list(curves.items())[:20]:  # more lines than that read as noise
        ax.plot(np.arange(len(a)) * stride, a, lw=1, label=name if len(curves) <= 8 else None)
    for key, colour in (("average_warn", "orange"), ("average_error", "red")):
        ax.axhline(ref.thresholds[key], color=colour, ls="--", lw=1, label=f"{key.split('_')[1].upper()} ({ref.thresholds[key]:.3g})")
    ax.set_yscale("log")
    ax.set_xlabel("frame")
    ax.set_ylabel(f"OOD score (moving average, {ref.average_frames} frames)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
