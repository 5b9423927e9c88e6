"""Semi-supervised video object segmentation by label propagation (paper Sec. 4.5, the DAVIS
protocol of Jabri et al. 2020): the first frame's mask is given; every later frame takes the labels
of its k nearest tokens (cosine similarity, softmax with a temperature) among the first frame and
the previous ``context`` frames; masks are upsampled and scored by J (region IoU).

    score = propagation_j(encoder, [(frames, masks), ...])     # frames uint8 [T,H,W,3], masks [T,H,W] ids 0..K
    floor = copy_first_j([(frames, masks), ...])               # the trivial baseline: frame 0's mask on every frame

An encoder's J means something only beside ``copy_first_j`` of the same clips: on slow-moving objects
copying the first mask already scores well.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from toto_robot.encoders.base import Encoder


@torch.no_grad()
def clip_tokens(encoder: Encoder, frames: np.ndarray, layer: int | None = None) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> per-frame tokens [T, N, C] (a clip goes through the encoder as a video)."""
    layer = encoder.layer if layer is None else layer
    tokens = encoder.hidden_states(frames[None], [layer])[layer][0]  # (T*N, C)
    return tokens.reshape(len(frames), -1, tokens.shape[-1]).float()


def soft_labels(mask: np.ndarray, num_labels: int, grid: int) -> torch.Tensor:
    """int mask [H, W] -> label distribution per token [num_labels, grid*grid] (area-averaged one-hot)."""
    onehot = F.one_hot(torch.from_numpy(mask.astype(np.int64)), num_labels).permute(2, 0, 1).float()[None]  # (1, K+1, H, W)
    return F.adaptive_avg_pool2d(onehot, grid)[0].flatten(1)  # (K+1, N)


def propagate(tokens: torch.Tensor, first: torch.Tensor, topk: int = 7, temperature: float = 0.07, context: int = 7) -> torch.Tensor:
    """tokens [T, N, C], first-frame labels [L, N] -> labels of every frame [T, L, N]."""
    feats = F.normalize(tokens, dim=-1)
    labels = [first]
    for t in range(1, len(feats)):
        ctx = [0] + list(range(max(1, t - context), t))
        keys = torch.cat([feats[i] for i in ctx])  # (M, C)
        vals = torch.cat([labels[i] for i in ctx], dim=1)  # (L, M)
        sim = feats[t] @ keys.T / temperature  # (N, M)
        k = min(topk, sim.shape[1])
        top, idx = sim.topk(k, dim=1)  # (N, k)
        w = top.softmax(dim=1)  # (N, k)
        labels.append((vals[:, idx] * w[None]).sum(-1))  # (L, N)
    return torch.stack(labels)


def jaccard(pred: np.ndarray, gt: np.ndarray, num_objects: int) -> float:
    """Mean IoU over objects 1..K and frames; an object absent from both counts as 1."""
    scores = []
    for k in range(1, num_objects + 1):
        p, g = pred == k, gt == k
        union = np.logical_or(p, g).sum()
        scores.append(1.0 if union == 0 else np.logical_and(p, g).sum() / union)
    return float(np.mean(scores))


def segment(tokens: torch.Tensor, first_mask: np.ndarray, num_objects: int, size: int, **kw) -> np.ndarray:
    """Propagate ``first_mask`` through a clip's tokens -> predicted masks [T, size, size]."""
    T, N, _ = tokens.shape
    grid = int(round(N ** 0.5))
    labels = propagate(tokens, soft_labels(first_mask, num_objects + 1, grid), **kw)  # (T, L, N)
    maps = labels.reshape(T, num_objects + 1, grid, grid)
    up = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)
    pred = up.argmax(1).numpy()
    pred[0] = first_mask
    return pred


def propagation_j(encoder: Encoder, videos: list[tuple[np.ndarray, np.ndarray]], layer: int | None = None, **kw) -> dict:
    """J (mean region IoU, frames after the first) of label propagation with ``encoder``'s tokens."""
    per_video = []
    for frames, masks in videos:
        k = int(masks.max())
        pred = segment(clip_tokens(encoder, frames, layer), masks[0], k, masks.shape[-1], **kw)
        per_video.append(float(np.mean([jaccard(pred[t], masks[t], k) for t in range(1, len(masks))])))
    return {"J": float(np.mean(per_video)), "per_video": per_video}


def copy_first_j(videos: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """J of copying the first mask to every later frame, scored like ``propagation_j`` (same ``jaccard``, frames after the first)."""
    per_video = []
    for _frames, masks in videos:
        k = int(masks.max())
        per_video.append(float(np.mean([jaccard(masks[0], masks[t], k) for t in range(1, len(masks))])))
    return {"J": float(np.mean(per_video)), "per_video": per_video}


def propagation_sweep(encoder: Encoder, videos, layers: list[int] | None = None, out_dir=None, **kw) -> list[dict]:
    """J of label propagation at each layer, with the copy-first-mask J of the same clips beside it in every row;
    with ``out_dir`` writes ``label_propagation.csv`` and ``.png``."""
    from pathlib import Path

    from toto_robot.utils.io import atomic_write_csv
    from toto_robot.utils.plots import pyplot, save_figure

    layers = list(range(1, encoder.num_layers + 1)) if layers is None else list(layers)
    floor = copy_first_j(videos)["J"]
    rows = [{"encoder": encoder.name, "layer": l, "depth": l / encoder.num_layers, "J": propagation_j(encoder, videos, l, **kw)["J"],
             "copy_first_J": floor} for l in layers]
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_csv(rows, out / "label_propagation.csv")
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
        ax.plot([r["depth"] for r in rows], [r["J"] for r in rows], marker="o", label=encoder.name)
        ax.axhline(floor, color="grey", ls=":", label="copy first mask")
        ax.set_xlabel("relative depth of layer")
        ax.set_ylabel("J (region IoU)")
        ax.set_title("label propagation")
        ax.grid(alpha=0.3)
        ax.legend()
        save_figure(fig, out / "label_propagation.png")
    return rows


def shapes_videos(n: int = 8, num_frames: int = 8, size: int = 64, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Generated clips with known object masks (1-3 moving shapes) for label propagation."""
    from toto_robot.data.synthetic import moving_shapes

    rng = np.random.default_rng(seed)
    return [moving_shapes(num_frames, size, int(rng.integers(1, 4)), rng)[:2] for _ in range(n)]
