"""Labelled probing sets built from what the project generates (no downloads).

* ``sim``: frames of a MuJoCo task after a few random arm motions; the label is the object's
  (cube's, or cabinet's) position on the table in a 3 x 3 grid over its reset range
  (``target="position"``, spatial information a policy needs) or its colour (``target="colour"``).
  The arm pose is a nuisance the probe must ignore. ``target="offset"`` (pick tasks) asks instead where
  the cube is relative to the gripper, on a 3 x 3 grid of 2 cm cells (within 1 cm of centred, or off to
  either side, along x and y), from frames with the gripper brought 4-12 cm above the cube: the
  centimetre a grasp needs, seen as a wrist (eye-in-hand) camera sees it.
* ``image_folder``: your own labelled images in torchvision's ImageFolder layout (``root/<class>/*.jpg``).
* ``shapes_motion``: short clips of one moving shape; the label is its direction of motion
  (4 diagonal classes), which a single frame cannot tell: a probe for video features.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from toto_robot.data.synthetic import moving_shapes
from toto_robot.errors import DataFormatError, InputNotFoundError
from toto_robot.utils.config import ConfigError


@dataclass
class ProbeData:
    name: str
    x_train: np.ndarray  # uint8 [N, H, W, 3] images or [N, T, H, W, 3] clips
    y_train: np.ndarray  # int64 [N]
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def chance(self) -> float:
        """Accuracy of always predicting the majority class of the training labels, on the validation set."""
        major = np.bincount(self.y_train, minlength=self.num_classes).argmax()
        return float((self.y_val == major).mean())


def _split(name, x, y, n_train, classes):
    return ProbeData(name, x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes)


def sim_probe_data(task: str = "franka_pick", target: str = "position", n_train: int = 300, n_val: int = 100,
                   image_size: int = 64, seed: int = 0, camera: str = "agentview") -> ProbeData:
    from toto_robot.sim_envs import make_env
    from toto_robot.sim_envs.tasks import COLORS, PickTask, grid_cell

    if target not in ("position", "colour", "offset"):
        raise ConfigError(f"sim probe target must be 'position', 'colour' or 'offset', got {target!r}")
    env = make_env(task, image_size=image_size, camera=camera, randomization={"lighting": True, "colors": False, "camera_jitter": 0.005})
    base = env.unwrapped
    if target == "offset":
        if not isinstance(base.task, PickTask):
            env.close()
            raise ConfigError(f"sim probe target 'offset' (cube relative to the gripper) needs a pick task, got {task!r}")
        return _offset_probe_data(env, task, n_train, n_val, seed)
    if target == "position" and base.task.position_range is None:
        env.close()
        raise ConfigError(f"sim probe target 'position' needs a task with an object placed over a range (pick, cabinet, reach), got {task!r}")
    if target == "colour" and not base.task.has_colours:
        env.close()
        raise ConfigError(f"sim probe target 'colour' needs a task whose object colour varies (pick, cabinet), got {task!r}")
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in tqdm(range(n_train + n_val), desc=f"probe data {task}/{target}", unit="img", leave=False):
        obs, _ = env.reset(seed=seed * 100_003 + i)
        for _ in range(int(rng.integers(0, 6))):
            obs, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        xs.append(obs["image"])
        if target == "colour":
            ys.append(base.task.label(base))
        else:  # the object's (cube's, cabinet's, reach target's) table position in a 3 x 3 grid over its reset range
            ys.append(grid_cell(base.task.object_pos(base), *base.task.position_range))
    env.close()
    classes = [f"x{i // 3}y{i % 3}" for i in range(9)] if target == "position" else [f"colour{i}" for i in range(len(COLORS))]
    return _split(f"{task}_{target}", np.stack(xs), np.asarray(ys, np.int64), n_train, classes)


OFFSET_EDGE = 0.01  # m: the grid's middle cell is the gripper within 1 cm of the cube, along x and along y


def _offset_probe_data(env, task: str, n_train: int, n_val: int, seed: int) -> ProbeData:
    """Frames with the open gripper brought to a random point 4-12 cm above the cube, up to 3 cm off to
    either side; the label is where the cube sits relative to the gripper (3 x 3 cells, edges at +-1 cm)."""
    from toto_robot.sim_envs.experts import _toward

    base = env.unwrapped
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in tqdm(range(n_train + n_val), desc=f"probe data {task}/offset", unit="img", leave=False):
        obs, _ = env.reset(seed=seed * 100_003 + i)
        goal = base.task.cube_pos(base) + [rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), rng.uniform(0.04, 0.12)]
        for _ in range(40):  # the arm's own controller: ee_delta steps toward the goal
            obs, *_ = env.step(_toward(base, goal, -1))
            if np.linalg.norm(base.grip_pos() - goal) < 0.003:
                break
        dx, dy = (base.task.cube_pos(base) - base.grip_pos())[:2]
        xs.append(obs["image"])
        ys.append(3 * int(np.digitize(dx, [-OFFSET_EDGE, OFFSET_EDGE])) + int(np.digitize(dy, [-OFFSET_EDGE, OFFSET_EDGE])))
    env.close()
    classes = [f"dx{'-0+'[i // 3]}dy{'-0+'[i % 3]}" for i in range(9)]
    return _split(f"{task}_offset", np.stack(xs), np.asarray(ys, np.int64), n_train, classes)


def shapes_motion_data(n_train: int = 300, n_val: int = 100, num_frames: int = 4, size: int = 32, seed: int = 0) -> ProbeData:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    while len(xs) < n_train + n_val:
        frames, masks, _ = moving_shapes(num_frames, size, num_objects=1, rng=rng)
        yx = [np.argwhere(m > 0).mean(0) for m in masks[:2]]
        dy, dx = yx[1] - yx[0]
        if min(abs(dy), abs(dx)) < 0.3:  # too slow along one axis to have a clear direction
            continue
        xs.append(frames)
        ys.append(2 * int(dy > 0) + int(dx > 0))
    return _split("shapes_motion", np.stack(xs), np.asarray(ys, np.int64), n_train, ["up-left", "up-right", "down-left", "down-right"])


def build_probe_data(dataset: str, **kwargs) -> ProbeData:
    if dataset == "sim":
        return sim_probe_data(**kwargs)
    if dataset == "shapes_motion":
        return shapes_motion_data(**kwargs)
    if dataset == "image_folder":
        return image_folder_data(**kwargs)
    raise ConfigError(f"unknown probe dataset {dataset!r}; known: sim, shapes_motion, image_folder")


def image_folder_data(root: str, image_size: int = 64, val_fraction: float = 0.2, max_per_class: int | None = None,
                      seed: int = 0) -> ProbeData:
    """A torchvision ``ImageFolder`` layout (``root/<class>/*.png|jpg``) -> ProbeData: images centre-cropped and
    resized to ``image_size``, a stratified train/val split. Unreadable images are logged and skipped."""
    import logging
    from pathlib import Path

    import torch

    from toto_robot.data.video import IMAGE_SUFFIXES, VideoDecodeError, read_image
    from toto_robot.encoders.base import resize_frames_u8

    log = logging.getLogger(__name__)
    if not Path(root).is_dir():
        raise InputNotFoundError(f"image-folder root {root} is not a folder (probe.kwargs.root=<root>/<class>/*.png|jpg)")
    classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataFormatError(f"{root}: an image-folder dataset needs at least two class folders, found {classes}")
    rng = np.random.default_rng(seed)
    tr_x, tr_y, va_x, va_y = [], [], [], []
    for c, name in enumerate(classes):
        files = sorted(p for p in (Path(root) / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:max_per_class]
        imgs = []
        for f in files:
            try:
                img = read_image(f)
            except VideoDecodeError as e:
                log.warning("skipping %s", e)
                continue
            imgs.append(resize_frames_u8(torch.from_numpy(np.array(img))[None], image_size)[0].numpy())
        if len(imgs) < 2:
            raise DataFormatError(f"{root}/{name}: fewer than two readable images")
        order = rng.permutation(len(imgs))
        n_val = max(1, int(round(val_fraction * len(imgs))))
        va_x += [imgs[i] for i in order[:n_val]]
        va_y += [c] * n_val
        tr_x += [imgs[i] for i in order[n_val:]]
        tr_y += [c] * (len(imgs) - n_val)
    return ProbeData(Path(root).name, np.stack(tr_x), np.asarray(tr_y, np.int64), np.stack(va_x), np.asarray(va_y, np.int64), classes)
