"""Robot camera frames with a continuous target per frame (e.g. end-effector xyz), grouped by episode,
read from a folder the user points at (nothing is downloaded).

Two layouts are read:

* the project's demonstration format (``toto_robot/data/demos.py``: ``meta.json`` + ``episodes/*.npz``,
  image uint8 [T,H,W,3], state float32 [T,S]); the target is ``state[:, target]``.
* a plain folder of ``.npz`` files, one per episode, each holding an image array (``image_key``) and a
  target array (``target_key``, [T] or [T,D]) of the same length: real robot logs converted to npz.

State layout of the sim suite (``sim_envs/base_env.py``, 19 values): arm joint positions 0-6, arm joint
velocities 7-13, finger positions 14-15, gripper site position (end-effector xyz, world frame, metres)
16-18. ``SIM_EE_POS`` names the last three. Other sources (the ROS recorder) store whatever their state
topic carries: pass that source's indices.

    data = robot_frames("runs/collect/franka_pick/demos", target=SIM_EE_POS, stride=2)
    data.frames   # uint8 [N, H, W, 3]
    data.targets  # float32 [N, D]
    data.groups   # int64 [N] episode of each frame (folds never split an episode)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from toto_robot.constants import OBS_IMAGE, OBS_STATE
from toto_robot.data.demos import META_NAME, DemoDataset, DemoFormatError
from toto_robot.encoders.base import resize_frames_u8
from toto_robot.errors import DataFormatError
from toto_robot.utils.config import ConfigError

SIM_EE_POS = (16, 17, 18)  # gripper site xyz in the sim suite's 19-value state


@dataclass
class FrameTargets:
    name: str
    frames: np.ndarray  # uint8 [N, H, W, 3]
    targets: np.ndarray  # float32 [N, D]
    groups: np.ndarray  # int64 [N] episode index of each frame
    target_names: list[str]


def demo_episodes(ds: DemoDataset, max_episodes: int | None = None):
    """Yield ``(path, images [T,H,W,3], state [T,S])`` of the first ``max_episodes`` episodes of a demo dataset."""
    for i in range(len(ds))[:max_episodes]:
        ep = ds[i]
        yield ds.paths[i], ep[OBS_IMAGE], ep[OBS_STATE]


def npz_episodes(root: Path, image_key: str, target_key: str, max_episodes: int | None = None):
    """Yield ``(path, images [T,H,W,3], target [T] or [T,D])`` from the first ``max_episodes`` ``*.npz`` in ``root`` (sorted)."""
    paths = sorted(root.glob("*.npz"))
    if not paths:
        raise DemoFormatError(f"{root}: neither a demonstration dataset ({META_NAME}) nor a folder of .npz episodes")
    for path in paths[:max_episodes]:
        try:
            with np.load(path) as z:
                names = sorted(z.files)
                arrays = {k: z[k] for k in (image_key, target_key) if k in names}
        except Exception as e:
            raise DemoFormatError(f"{path}: unreadable episode file ({e})") from e
        if len(arrays) < len({image_key, target_key}):
            raise DemoFormatError(f"{path}: needs arrays {image_key!r} and {target_key!r}, has {names}")
        yield path, arrays[image_key], arrays[target_key]


def robot_frames(root: str | Path, target: list[int] | tuple[int, ...] | None = SIM_EE_POS, target_key: str = OBS_STATE,
                 image_key: str = OBS_IMAGE, max_episodes: int | None = None, stride: int = 1,
                 max_frames: int | None = None, size: int | None = None) -> FrameTargets:
    """Episodes in ``root`` -> frames, targets and episode groups.

    ``target``: column indices of the ``target_key`` array (None: every column). ``stride`` keeps every
    stride-th frame of an episode, ``max_frames`` the first that many of those, ``max_episodes`` the first
    episodes. ``size`` centre-crops and resizes frames to ``size x size`` on load (the encoders crop and
    resize anyway; this only bounds memory for large camera frames).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DemoFormatError(f"robot frames folder not found: {root}")
    if stride < 1:
        raise ConfigError(f"stride must be positive, got {stride}")
    if (root / META_NAME).is_file():
        if (target_key, image_key) != (OBS_STATE, OBS_IMAGE):
            raise DataFormatError(f"{root} is a demonstration dataset: its arrays are {OBS_IMAGE!r} and {OBS_STATE!r}, "
                             f"got image_key={image_key!r} target_key={target_key!r}")
        ds = DemoDataset(root)
        if not len(ds):
            raise DemoFormatError(f"{root}: demonstration dataset with no episodes")
        episodes = demo_episodes(ds, max_episodes)
    else:
        episodes = npz_episodes(root, image_key, target_key, max_episodes)
    frames, targets, groups = [], [], []
    for g, (path, img, y) in enumerate(episodes):
        y = np.asarray(y, dtype=np.float32)
        y = y[:, None] if y.ndim == 1 else y  # (T, D)
        if img.dtype != np.uint8 or img.ndim != 4 or img.shape[-1] != 3:
            raise DemoFormatError(f"{path}: {image_key!r} must be uint8 [T,H,W,3], got {img.dtype} {img.shape}")
        if y.ndim != 2 or len(y) != len(img):
            raise DemoFormatError(f"{path}: {target_key!r} must be [T={len(img)}] or [T, D], got {y.shape}")
        cols = list(range(y.shape[1])) if target is None else [int(i) for i in target]
        if not cols or min(cols) < -y.shape[1] or max(cols) >= y.shape[1]:
            raise ConfigError(f"{path}: target indices {cols} outside the {y.shape[1]} columns of {target_key!r}")
        picks = np.arange(0, len(img), stride)[:max_frames]
        imgs = img[picks]
        if size is not None:
            imgs = resize_frames_u8(torch.from_numpy(np.ascontiguousarray(imgs)), size).numpy()  # (t, size, size, 3)
        frames.append(imgs)
        targets.append(y[picks][:, cols])
        groups.append(np.full(len(picks), g, np.int64))
    if not frames:
        raise DataFormatError(f"{root}: no episodes read (max_episodes={max_episodes})")
    shapes = {f.shape[1:] for f in frames}
    if len(shapes) > 1:
        raise DemoFormatError(f"{root}: episodes have different frame sizes {sorted(shapes)}; pass size=<pixels> to resize on load")
    widths = {t.shape[1] for t in targets}
    if len(widths) > 1:
        raise DemoFormatError(f"{root}: episodes' {target_key!r} arrays have different widths {sorted(widths)}; pick columns with target=[...]")
    if target is None:
        names = [f"{target_key}[{i}]" for i in range(targets[0].shape[1])]
    else:
        names = [f"{target_key}[{i}]" for i in target]
    return FrameTargets(root.name, np.concatenate(frames), np.concatenate(targets), np.concatenate(groups), names)
