"""Semi-supervised video object segmentation by label propagation (paper Sec. 4.5, the DAVIS
protocol of Jabri et al. 2020 as DINO's ``eval_video_segmentation.py`` runs it): the first frame's
mask is given; every later frame takes the labels of its k nearest tokens (cosine similarity of tokens
centred on the clip's mean token, softmax with a temperature) among the first frame and the previous
``context`` frames, searched within a window around its own cell; label maps are upsampled, each label's map rescaled to [0, 1] (DINO's
``norm_mask``) and the argmax scored by J (region IoU) and F (boundary F-measure, DAVIS's tolerance
of 0.008 of the image diagonal), per clip and averaged. Defaults are DINO's: k = 5, temperature 0.1,
7 previous frames, a window of 12 rows of its 60-row grid (``radius=0.2`` of the grid side).

    score = propagation_j(encoder, [(frames, masks), ...])     # frames uint8 [T,H,W,3], masks [T,H,W] ids 0..K
    floor = copy_first_j([(frames, masks), ...])               # the trivial baseline: frame 0's mask on every frame
    score["J"], score["F"], score["J&F"], score["per_video"], score["per_video_F"]

An encoder's J means something only beside ``copy_first_j`` of the same clips: on slow-moving objects
copying the first mask already scores well.

Clips longer than the encoder's context (``encoder.max_frames``: a Toto model holds 8 frames of 64 px
patch tokens at the tiny sizes) are read in windows: the first window is frames 0..W-1; every later
one is frame 0 followed by the next W-1 frames, so each frame is encoded in a video that starts with
the annotated frame. Propagation then runs over the whole clip as usual: a window's first frames take
their labels from the previous window's predictions (the last ``context`` frames) and from frame 0's mask.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from toto_robot.encoders.base import Encoder


def clip_windows(num_frames: int, max_frames: int | None) -> list[list[int]]:
    """Frame indices of each encoder pass: the whole clip, or windows of ``max_frames`` that restart from frame 0
    (``max_frames=1``: every frame on its own, seeing no past)."""
    if max_frames is None or num_frames <= max_frames:
        return [list(range(num_frames))]
    if max_frames == 1:
        return [[t] for t in range(num_frames)]
    if max_frames < 1:
        raise ValueError(f"label propagation needs an encoder window of at least 1 frame, got {max_frames}")
    step = max_frames - 1
    return [list(range(max_frames))] + [[0, *range(s, min(s + step, num_frames))] for s in range(max_frames, num_frames, step)]


@torch.no_grad()
def clip_tokens(encoder: Encoder, frames: np.ndarray, layer: int | None = None, window: int | None = None) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> per-frame tokens [T, N, C]; a clip goes through the encoder as a video, in
    windows starting with frame 0 when it is longer than the encoder's context (module docstring).
    ``window`` caps the frames of one pass below the context (how much of the clip's past a frame's
    tokens have seen; 1 = each frame alone)."""
    layer = encoder.layer if layer is None else layer
    return clip_layer_tokens(encoder, frames, [layer], window)[layer]


@torch.no_grad()
def clip_layer_tokens(encoder: Encoder, frames: np.ndarray, layers: list[int], window: int | None = None,
                      batch_size: int = 16) -> dict[int, torch.Tensor]:
    """``clip_tokens`` of several layers from one pass: {layer: [T, N, C]}. Windows of the same length go through
    the encoder together, ``batch_size`` at a time (each window is its own sequence, so the tokens are those of
    one window per pass)."""
    out: dict[int, list] = {l: [None] * len(frames) for l in layers}
    limit = getattr(encoder, "max_frames", None)
    if window is not None:
        limit = window if limit is None else min(limit, window)
    windows = clip_windows(len(frames), limit)
    by_length: dict[int, list[list[int]]] = {}
    for w in windows:
        by_length.setdefault(len(w), []).append(w)
    for length, group in by_length.items():
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            hidden = encoder.hidden_states(np.stack([frames[w] for w in batch]), layers)  # {layer: (b, W*N, C)}
            for l, h in hidden.items():
                h = h.reshape(len(batch), length, -1, h.shape[-1])  # (b, W, N, C)
                for b, w in enumerate(batch):
                    for j, t in enumerate(w):
                        if out[l][t] is None:  # frame 0 keeps its tokens from the first window (processed first)
                            out[l][t] = h[b, j]
    return {l: torch.stack(v).float() for l, v in out.items()}  # (T, N, C)


def soft_labels(mask: np.ndarray, num_labels: int, grid: int) -> torch.Tensor:
    """int mask [H, W] -> label distribution per token [num_labels, grid*grid] (area-averaged one-hot)."""
    onehot = F.one_hot(torch.from_numpy(mask.astype(np.int64)), num_labels).permute(2, 0, 1).float()[None]  # (1, K+1, H, W)
    return F.adaptive_avg_pool2d(onehot, grid)[0].flatten(1)  # (K+1, N)


def neighbourhood(grid: int, radius: int) -> torch.Tensor:
    """bool [N, N], N = grid*grid: cell i may take labels from cell j when both row and column lie within ``radius``."""
    yy, xx = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    y, x = yy.flatten(), xx.flatten()
    return ((y[:, None] - y[None]).abs() <= radius) & ((x[:, None] - x[None]).abs() <= radius)


def propagate(tokens: torch.Tensor, first: torch.Tensor, topk: int = 5, temperature: float = 0.1, context: int = 7,
              radius: float | None = 0.2) -> torch.Tensor:
    """tokens [T, N, C], first-frame labels [L, N] -> labels of every frame [T, L, N].

    Frame t's token takes the softmax-weighted labels of its ``topk`` most similar tokens (cosine /
    ``temperature``) among frame 0 and the previous ``context`` frames, searched only within a square
    window of ``radius`` x the grid side around its own cell (DINO's ``size_mask_neighborhood``: 12 of
    a 60-row grid; None searches the whole frame). With a window, the similarities are computed only where
    they can be chosen (``LocalKeys``): the same labels as scoring every pair, at a fraction of the work."""
    feats = F.normalize(tokens, dim=-1)
    T, N, _ = feats.shape
    grid = int(round(N ** 0.5))
    local = None if radius is None else LocalKeys(grid, max(1, round(radius * grid)))
    labels = [first]
    for t in range(1, T):
        ctx = [0] + list(range(max(1, t - context), t))
        keys = torch.stack([feats[i] for i in ctx])  # (F, N, C), F = len(ctx)
        vals = torch.stack([labels[i] for i in ctx])  # (F, L, N)
        if local is None:
            sim = feats[t] @ keys.reshape(-1, keys.shape[-1]).T / temperature  # (N, F*N)
            top, idx = sim.topk(min(topk, sim.shape[1]), dim=1)  # (N, k)
        else:
            top, idx = local.topk(feats[t], keys, temperature, topk)  # (N, k): scores, indices into the F*N keys
        w = top.softmax(dim=1)  # (N, k)
        flat = vals.permute(1, 0, 2).reshape(vals.shape[1], -1)  # (L, F*N): frame-major, as the keys
        labels.append((flat[:, idx] * w[None]).sum(-1))  # (L, N)
    return torch.stack(labels)


class LocalKeys:
    """The keys a token may take labels from under ``neighbourhood(grid, radius)``, scored tile by tile: the grid is cut
    into ``tile`` x ``tile`` query cells, and each tile scores only the (tile + 2 radius)^2 key cells around it (the
    window shifted inward at the borders, so every tile has the same number), the cells outside a token's own
    neighbourhood masked. On a 32 x 32 grid with radius 6 a tile of 8 x 8 tokens scores 400 of the 1024 cells of each
    frame. A grid the tiles do not fit (window larger than the grid, or a side not a multiple of the tile) scores
    every cell and masks, which gives the same labels."""

    def __init__(self, grid: int, radius: int, tile: int = 8):
        self.grid, self.radius = grid, radius
        span = tile + 2 * radius
        self.tiled = grid % tile == 0 and span < grid
        allowed = neighbourhood(grid, radius)  # (N, N)
        if not self.tiled:
            self.queries = torch.arange(grid * grid)[None]  # one "tile": every cell
            self.keys = torch.arange(grid * grid)[None]
            self.blocked = ~allowed[None]  # (1, N, N)
            return
        starts = range(0, grid, tile)
        queries, keys = [], []
        for y0 in starts:
            for x0 in starts:
                ky, kx = min(max(y0 - radius, 0), grid - span), min(max(x0 - radius, 0), grid - span)
                queries.append((torch.arange(y0, y0 + tile)[:, None] * grid + torch.arange(x0, x0 + tile)[None]).flatten())
                keys.append((torch.arange(ky, ky + span)[:, None] * grid + torch.arange(kx, kx + span)[None]).flatten())
        self.queries, self.keys = torch.stack(queries), torch.stack(keys)  # (P, Q), (P, K): P tiles
        self.blocked = ~allowed[self.queries[:, :, None], self.keys[:, None, :]]  # (P, Q, K)
        self._order = torch.argsort(self.queries.flatten())  # tile-major rows -> cell order

    def topk(self, query: torch.Tensor, keys: torch.Tensor, temperature: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """query [N, C], keys [F, N, C] of F frames -> the ``k`` best cosine / ``temperature`` scores of each query cell
        within its neighbourhood [N, k], and their indices into the F*N keys (frame-major) [N, k]."""
        Fr, N, C = keys.shape
        P, Q = self.queries.shape
        K = self.keys.shape[1]
        q = query[self.queries]  # (P, Q, C)
        kv = keys[:, self.keys].permute(1, 0, 2, 3).reshape(P, Fr * K, C)  # (P, F*K, C): each tile's window in every frame
        sim = torch.bmm(q, kv.transpose(1, 2)).div_(temperature)  # (P, Q, F*K)
        sim = sim.view(P, Q, Fr, K).masked_fill_(self.blocked[:, :, None], float("-inf")).view(P, Q, Fr * K)
        top, col = sim.topk(min(k, Fr * K), dim=2)  # (P, Q, k)
        idx = (col // K) * N + self.keys.gather(1, (col % K).reshape(P, -1)).reshape(col.shape)  # frame * N + key cell
        top, idx = top.reshape(P * Q, -1), idx.reshape(P * Q, -1)
        return (top[self._order], idx[self._order]) if self.tiled else (top, idx)  # rows in cell order


def norm_labels(maps: torch.Tensor) -> torch.Tensor:
    """[T, L, H, W] label maps with each label's map rescaled to [0, 1] per frame (DINO's ``norm_mask``), so a
    small object whose probability never tops the background's still wins where it is most likely."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / span.clamp_min(1e-12), maps)


def jaccard(pred: np.ndarray, gt: np.ndarray, num_objects: int) -> float:
    """Mean IoU over objects 1..K and frames; an object absent from both counts as 1."""
    scores = []
    for k in range(1, num_objects + 1):
        p, g = pred == k, gt == k
        union = np.logical_or(p, g).sum()
        scores.append(1.0 if union == 0 else np.logical_and(p, g).sum() / union)
    return float(np.mean(scores))


def boundary(mask: np.ndarray) -> np.ndarray:
    """bool [H, W] -> its boundary pixels: mask pixels with a 4-neighbour outside the mask (or on the image edge)."""
    m = np.pad(mask, 1, constant_values=False)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask & ~inner


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """bool [H, W] grown by a disk of ``radius`` pixels."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = torch.from_numpy((yy**2 + xx**2 <= radius**2).astype(np.float32))[None, None]
    grown = F.conv2d(torch.from_numpy(mask.astype(np.float32))[None, None], disk, padding=radius)
    return grown[0, 0].numpy() > 0.5


def boundary_f(pred: np.ndarray, gt: np.ndarray, num_objects: int, bound_th: float = 0.008) -> float:
    """DAVIS's F: per object, the F-measure of boundary precision and recall, a boundary pixel counting as matched
    within ``bound_th`` of the image diagonal (at least 1 pixel); mean over objects 1..K; absent from both counts as 1."""
    radius = max(1, int(np.ceil(bound_th * np.hypot(*gt.shape))))
    scores = []
    for k in range(1, num_objects + 1):
        pb, gb = boundary(pred == k), boundary(gt == k)
        if not pb.any() or not gb.any():
            scores.append(float(not pb.any() and not gb.any()))
            continue
        precision = (pb & dilate(gb, radius)).sum() / pb.sum()
        recall = (gb & dilate(pb, radius)).sum() / gb.sum()
        scores.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores))


def clip_scores(pred: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    """Predicted and true masks [T, H, W] -> (J, F) averaged over the frames after the first."""
    k = int(masks.max())
    return (float(np.mean([jaccard(pred[t], masks[t], k) for t in range(1, len(masks))])),
            float(np.mean([boundary_f(pred[t], masks[t], k) for t in range(1, len(masks))])))


def summarize_clips(scores: list[tuple[float, float]]) -> dict:
    j, f = float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))
    return {"J": j, "F": f, "J&F": (j + f) / 2, "per_video": [s[0] for s in scores], "per_video_F": [s[1] for s in scores]}


def segment(tokens: torch.Tensor, first_mask: np.ndarray, num_objects: int, size: int, norm: bool = True, center: bool = True,
            **kw) -> np.ndarray:
    """Propagate ``first_mask`` through a clip's tokens -> predicted masks [T, size, size] (``norm``: ``norm_labels``
    before the argmax; ``center``: subtract the clip's mean token first, so the cosine compares what tells tokens
    apart rather than the component they all share)."""
    if center:
        tokens = tokens - tokens.mean(dim=(0, 1), keepdim=True)  # (T, N, C)
    T, N, _ = tokens.shape
    grid = int(round(N ** 0.5))
    labels = propagate(tokens, soft_labels(first_mask, num_objects + 1, grid), **kw)  # (T, L, N)
    maps = labels.reshape(T, num_objects + 1, grid, grid)
    up = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)  # (T, L, size, size)
    pred = (norm_labels(up) if norm else up).argmax(1).numpy()
    pred[0] = first_mask
    return pred


def propagation_j(encoder: Encoder, videos: list[tuple[np.ndarray, np.ndarray]], layer: int | None = None, window: int | None = None,
                  **kw) -> dict:
    """J (mean region IoU) and F (boundary F-measure) over the frames after the first, per clip and averaged,
    of label propagation with ``encoder``'s tokens (``window``: ``clip_tokens``; ``kw``: ``segment``/``propagate``)."""
    layer = encoder.layer if layer is None else layer
    return propagation_layers(encoder, videos, [layer], window, **kw)[layer]


def propagation_layers(encoder: Encoder, videos: list[tuple[np.ndarray, np.ndarray]], layers: list[int], window: int | None = None,
                       **kw) -> dict[int, dict]:
    """``propagation_j`` at each of ``layers`` from one encoder pass per clip: {layer: scores}."""
    scores: dict[int, list] = {l: [] for l in layers}
    for frames, masks in videos:
        tokens = clip_layer_tokens(encoder, frames, layers, window)
        for l in layers:
            scores[l].append(clip_scores(segment(tokens.pop(l), masks[0], int(masks.max()), masks.shape[-1], **kw), masks))
    return {l: summarize_clips(s) for l, s in scores.items()}


def copy_first_j(videos: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """J and F of copying the first mask to every later frame, scored like ``propagation_j``."""
    return summarize_clips([clip_scores(np.broadcast_to(masks[:1], masks.shape), masks) for _frames, masks in videos])


def propagation_sweep(encoder: Encoder, videos, layers: list[int] | None = None, out_dir=None, **kw) -> list[dict]:
    """J and F of label propagation at each layer, with the copy-first-mask J and F of the same clips beside them in
    every row (and each clip's J and F as ``per_video`` / ``per_video_F``); with ``out_dir`` writes
    ``label_propagation.csv`` (without the per-clip lists) and ``.png``."""
    from pathlib import Path

    from toto_robot.utils.io import atomic_write_csv
    from toto_robot.utils.plots import pyplot, save_figure

    layers = list(range(1, encoder.num_layers + 1)) if layers is None else list(layers)
    floor = copy_first_j(videos)
    rows = []
    for l, s in propagation_layers(encoder, videos, layers, **kw).items():
        rows.append({"encoder": encoder.name, "layer": l, "depth": l / encoder.num_layers, "J": s["J"], "F": s["F"], "J&F": s["J&F"],
                     "copy_first_J": floor["J"], "copy_first_F": floor["F"], "per_video": s["per_video"], "per_video_F": s["per_video_F"]})
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_csv([{k: v for k, v in r.items() if not k.startswith("per_video")} for r in rows], out / "label_propagation.csv")
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
        ax.plot([r["depth"] for r in rows], [r["J"] for r in rows], marker="o", label=encoder.name)
        ax.axhline(floor["J"], color="grey", ls=":", label="copy first mask")
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
