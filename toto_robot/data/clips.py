"""Clip sampling as in the paper (Sec. 4.1): shortest side resized to R, random R x R crop,
T = 16 frames at stride 4; images are packed 16 to a "clip"."""
from __future__ import annotations

import numpy as np
from PIL import Image


def resize_shortest(frame: np.ndarray, size: int) -> np.ndarray:
    H, W = frame.shape[:2]
    if min(H, W) == size:
        return frame
    s = size / min(H, W)
    new = (max(size, round(W * s)), max(size, round(H * s)))
    return np.asarray(Image.fromarray(frame).resize(new, Image.BICUBIC))


def crop(frames: np.ndarray, size: int, top: int, left: int) -> np.ndarray:
    return frames[..., top:top + size, left:left + size, :]


def random_crop_box(H: int, W: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(0, H - size + 1)), int(rng.integers(0, W - size + 1))


def sample_clip(video: np.ndarray, size: int, num_frames: int = 16, stride: int = 4,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """uint8 [N, H, W, 3] -> [num_frames, size, size, 3]; short videos are looped to fill the clip."""
    rng = rng or np.random.default_rng()
    if video.ndim != 4 or video.shape[-1] != 3 or len(video) == 0:
        raise ValueError(f"video must be uint8 [N, H, W, 3] with N > 0, got {video.shape}")
    span = (num_frames - 1) * stride + 1
    start = int(rng.integers(0, max(1, len(video) - span + 1)))
    idx = (start + np.arange(num_frames) * stride) % len(video)
    frames = np.stack([resize_shortest(video[i], size) for i in idx])
    top, left = random_crop_box(frames.shape[1], frames.shape[2], size, rng)
    return np.ascontiguousarray(crop(frames, size, top, left))


def pack_images(images: list[np.ndarray], size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A list of images (any sizes) -> [len(images), size, size, 3], each resized and randomly cropped."""
    rng = rng or np.random.default_rng()
    out = []
    for img in images:
        img = resize_shortest(img, size)
        top, left = random_crop_box(img.shape[0], img.shape[1], size, rng)
        out.append(crop(img, size, top, left))
    return np.stack(out)
