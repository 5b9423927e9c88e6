"""The on-disk demonstration format shared by the sim collector, the ROS recorder and behaviour cloning.

A dataset is a folder::

    meta.json                    # DemoMeta: format version, source, task, shapes, fps, ...
    episodes/episode_000000.npz  # one file per episode, written atomically
    episodes/episode_000001.npz
    preview.mp4                  # optional, written by the collector

Each episode ``.npz`` holds arrays of equal length ``T``:

    image   uint8   [T, H, W, 3]   camera frames, RGB
    state   float32 [T, S]         proprioception (joint positions, velocities, gripper)
    action  float32 [T, A]         the action taken after observing step t
    reward  float32 [T]            (zeros when unknown, e.g. a real robot)
    success bool    []             whether the episode ended in success

optional: more cameras, each ``<name>_image uint8 [T, H, W, 3]`` (``wrist_image``: the eye-in-hand view; any size),
``seed int64 []`` (the env seed of a simulated
episode) and ``language str []`` (the instruction of an episode imported from LeRobot or RLDS).
An episode lands only when its whole file is written (``utils.io.atomic_write``), so a crash loses
at most the episode being recorded; the hidden temporary file it leaves is deleted by the next
``DemoWriter`` on that folder. Other formats (rosbag2, LeRobot v3, RLDS) are read and written by
``toto_robot.data.formats``.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from toto_robot.constants import ACTION, LANGUAGE, OBS_IMAGE, OBS_STATE, OBS_WRIST_IMAGE, REWARD, SEED, SUCCESS
from toto_robot.errors import UserError
from toto_robot.utils.io import atomic_save_json, atomic_write, remove_partial

FORMAT_VERSION = 1
META_NAME = "meta.json"
EPISODE_DIR = "episodes"
_EPISODE_RE = re.compile(r"episode_(\d{6})\.npz")


class DemoFormatError(UserError, ValueError):
    """A demonstration file or folder does not follow the format above."""


@dataclass
class DemoMeta:
    source: str  # "sim" or "ros"
    task: str
    image_size: tuple[int, int]  # (H, W)
    state_dim: int
    action_dim: int
    fps: float = 10.0
    action_space: str = "ee_delta"  # what the action means; "ee_delta" = [dx, dy, dz, gripper] in [-1, 1]
    extra: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, d: dict) -> "DemoMeta":
        if d.get("format_version") != FORMAT_VERSION:
            raise DemoFormatError(f"unsupported demo format_version {d.get('format_version')!r} (expected {FORMAT_VERSION})")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["image_size"] = tuple(known["image_size"])
        return cls(**known)


def validate_episode(ep: dict[str, np.ndarray], meta: DemoMeta | None = None, where: str = "episode") -> None:
    """Raise ``DemoFormatError`` naming the first key, dtype or shape that is wrong."""
    for key in (OBS_IMAGE, OBS_STATE, ACTION):
        if key not in ep:
            raise DemoFormatError(f"{where}: missing key {key!r} (has {sorted(ep)})")
    img, state, action = ep[OBS_IMAGE], ep[OBS_STATE], ep[ACTION]
    if img.dtype != np.uint8 or img.ndim != 4 or img.shape[-1] != 3:
        raise DemoFormatError(f"{where}: {OBS_IMAGE} must be uint8 [T,H,W,3], got {img.dtype} {img.shape}")
    T = img.shape[0]
    if T == 0:
        raise DemoFormatError(f"{where}: empty episode")
    if state.ndim != 2 or state.shape[0] != T:
        raise DemoFormatError(f"{where}: {OBS_STATE} must be [T={T}, S], got {state.shape}")
    if action.ndim != 2 or action.shape[0] != T:
        raise DemoFormatError(f"{where}: {ACTION} must be [T={T}, A], got {action.shape}")
    for key in camera_keys(ep)[1:]:
        extra = ep[key]
        if extra.dtype != np.uint8 or extra.ndim != 4 or extra.shape[-1] != 3 or extra.shape[0] != T:
            raise DemoFormatError(f"{where}: camera {key!r} must be uint8 [T={T}, H, W, 3] like {OBS_IMAGE}, got {extra.dtype} {extra.shape}")
    if not (np.isfinite(state).all() and np.isfinite(action).all()):
        raise DemoFormatError(f"{where}: non-finite values in {OBS_STATE} or {ACTION}")
    if meta is not None:
        if tuple(img.shape[1:3]) != tuple(meta.image_size):
            raise DemoFormatError(f"{where}: image size {img.shape[1:3]} != dataset image_size {meta.image_size}")
        if state.shape[1] != meta.state_dim:
            raise DemoFormatError(f"{where}: state dim {state.shape[1]} != dataset state_dim {meta.state_dim}")
        if action.shape[1] != meta.action_dim:
            raise DemoFormatError(f"{where}: action dim {action.shape[1]} != dataset action_dim {meta.action_dim}")


def camera_keys(ep: dict) -> list[str]:
    """An episode's camera keys: ``image`` first, then every ``<name>_image`` in name order."""
    return [OBS_IMAGE, *sorted(k for k in ep if k.endswith("_image") and k != OBS_IMAGE)]


class DemoWriter:
    """Append episodes to a dataset folder; each episode is one atomic file."""

    def __init__(self, root: str | Path, meta: DemoMeta):
        self.root = Path(root)
        self.meta = meta
        (self.root / EPISODE_DIR).mkdir(parents=True, exist_ok=True)
        remove_partial(self.root / EPISODE_DIR)  # episodes a crash interrupted
        meta_path = self.root / META_NAME
        if meta_path.exists():
            existing = DemoMeta.from_json(json.loads(meta_path.read_text()))
            for key in ("image_size", "state_dim", "action_dim", "action_space"):
                if getattr(existing, key) != getattr(meta, key):
                    raise DemoFormatError(
                        f"{self.root}: appending episodes with {key}={getattr(meta, key)!r} to a dataset with {key}={getattr(existing, key)!r}"
                    )
        else:
            atomic_save_json(asdict(meta), meta_path)

    def next_index(self) -> int:
        indices = [int(m.group(1)) for p in (self.root / EPISODE_DIR).iterdir() if (m := _EPISODE_RE.fullmatch(p.name))]
        return max(indices, default=-1) + 1

    def last_seed(self) -> int | None:
        """The ``seed`` stored in the newest episode (None when there is none, or it has no seed)."""
        n = self.next_index()
        if n == 0:
            return None
        with np.load(self.root / EPISODE_DIR / f"episode_{n - 1:06d}.npz") as z:
            return int(z[SEED]) if SEED in z.files else None

    def write_episode(self, image, state, action, reward=None, success: bool = False, wrist_image=None, seed: int | None = None,
                      language: str | None = None, cameras: dict | None = None) -> Path:
        """``cameras``: more views of the same steps, ``{"<name>_image": uint8 [T, H, W, 3]}`` (``wrist_image`` is one)."""
        ep = {
            OBS_IMAGE: np.asarray(image, dtype=np.uint8),
            OBS_STATE: np.asarray(state, dtype=np.float32),
            ACTION: np.asarray(action, dtype=np.float32),
        }
        T = ep[OBS_IMAGE].shape[0] if ep[OBS_IMAGE].ndim == 4 else 0
        ep[REWARD] = np.zeros(T, np.float32) if reward is None else np.asarray(reward, dtype=np.float32)
        ep[SUCCESS] = np.asarray(bool(success))
        if wrist_image is not None:
            ep[OBS_WRIST_IMAGE] = np.asarray(wrist_image, dtype=np.uint8)
        for key, frames in (cameras or {}).items():
            if not key.endswith("_image") or key == OBS_IMAGE:
                raise DemoFormatError(f"camera keys are named '<camera>_image' beside {OBS_IMAGE!r}, got {key!r}")
            ep[key] = np.asarray(frames)
        if seed is not None:
            ep[SEED] = np.asarray(seed, dtype=np.int64)
        if language is not None:
            ep[LANGUAGE] = np.asarray(str(language))
        validate_episode(ep, self.meta, where=f"new episode for {self.root}")
        path = self.root / EPISODE_DIR / f"episode_{self.next_index():06d}.npz"
        with atomic_write(path) as f:
            np.savez_compressed(f, **ep)
        return path


class DemoDataset:
    """Read a dataset folder: ``len(ds)`` episodes, ``ds[i]`` -> dict of arrays (validated)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta_path = self.root / META_NAME
        if not meta_path.is_file():
            raise DemoFormatError(f"{self.root} is not a demonstration dataset: no {META_NAME}")
        try:
            self.meta = DemoMeta.from_json(json.loads(meta_path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DemoFormatError(f"{meta_path}: unreadable metadata ({e})") from e
        ep_dir = self.root / EPISODE_DIR
        self.paths = sorted(p for p in ep_dir.iterdir() if _EPISODE_RE.fullmatch(p.name)) if ep_dir.is_dir() else []

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        path = self.paths[i]
        try:
            with np.load(path) as z:
                ep = {k: z[k] for k in z.files}
        except Exception as e:
            raise DemoFormatError(f"{path}: unreadable episode file ({e})") from e
        validate_episode(ep, self.meta, where=str(path))
        return ep

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(len(self)):
            yield self[i]

    def success_rate(self) -> float:
        return float(np.mean([bool(ep[SUCCESS]) for ep in self])) if len(self) else 0.0
