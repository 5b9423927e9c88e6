"""Procedural data: moving coloured shapes with known masks and labels, plus images that installed
packages ship (matplotlib's sample data). Nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

import numpy as np

PALETTE = np.array([[230, 60, 50], [60, 180, 75], [0, 130, 200], [245, 200, 40], [145, 30, 180], [240, 130, 40]], np.uint8)


def moving_shapes(num_frames: int = 32, size: int = 64, num_objects: int = 2, rng: np.random.Generator | None = None):
    """-> (frames uint8 [T, S, S, 3], masks uint8 [T, S, S] with object ids 1..K, colour ids [K])."""
    rng = rng or np.random.default_rng()
    yy, xx = np.mgrid[:size, :size]
    bg = (rng.uniform(20, 90, 3) + rng.normal(0, 6, (size, size, 3))).clip(0, 255)
    pos = rng.uniform(0.2, 0.8, (num_objects, 2)) * size
    vel = rng.uniform(-1.5, 1.5, (num_objects, 2)) * size / 64
    radius = rng.uniform(0.08, 0.16, num_objects) * size
    colours = rng.choice(len(PALETTE), num_objects, replace=False)
    square = rng.random(num_objects) < 0.5
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    masks = np.zeros((num_frames, size, size), np.uint8)
    for t in range(num_frames):
        img = bg.copy()
        for k in range(num_objects):
            pos[k] += vel[k]
            for d in range(2):  # bounce off the walls
                if not radius[k] <= pos[k, d] <= size - radius[k]:
                    vel[k, d] *= -1
                    pos[k, d] = np.clip(pos[k, d], radius[k], size - radius[k])
            cy, cx = pos[k]
            if square[k]:
                m = (np.abs(yy - cy) <= radius[k]) & (np.abs(xx - cx) <= radius[k])
            else:
                m = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius[k] ** 2
            img[m] = PALETTE[colours[k]]
            masks[t][m] = k + 1
        frames[t] = img.clip(0, 255).astype(np.uint8)
    return frames, masks, colours


def bundled_images() -> list[np.ndarray]:
    """RGB images that ship inside installed packages (matplotlib's sample data)."""
    import matplotlib

    from toto_robot.data.video import IMAGE_SUFFIXES, VideoDecodeError, read_image

    root = Path(matplotlib.get_data_path()) / "sample_data"
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            try:
                img = read_image(p)
            except VideoDecodeError:
                continue
            if min(img.shape[:2]) >= 64:
                out.append(img)
    return out
