"""The arena: floor, table, lights and cameras, plus visual domain randomization."""
from __future__ import annotations

from dataclasses import dataclass, fields

import mujoco
import numpy as np

from toto_robot.utils.config import ConfigError, check_int, check_number

TABLE_HEIGHT = 0.4
TABLE_CENTER = (0.55, 0.0)
TABLE_HALF = (0.35, 0.45)


@dataclass
class Randomization:
    """Visual domain randomization applied at every reset."""

    lighting: bool = False
    colors: bool = False
    camera_jitter: float = 0.0  # metres of camera position noise
    distractors: int = 0  # this many visual-only boxes (no collisions) of random colour, placed anywhere on the table at every reset

    @classmethod
    def from_config(cls, value: "Randomization | dict | None", key: str = "randomization") -> "Randomization":
        """A ``Randomization`` from a config mapping (None or {} = none), naming ``key`` and the field on a bad value."""
        if isinstance(value, cls):
            return value
        value = dict(value or {})
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ConfigError(f"{key} has no field {unknown[0]!r}; its fields are {names}")
        for flag in ("lighting", "colors"):
            if flag in value and not isinstance(value[flag], bool):
                raise ConfigError(f"{key}.{flag} must be true or false, got {value[flag]!r}")
        if "camera_jitter" in value:
            value["camera_jitter"] = check_number(value["camera_jitter"], f"{key}.camera_jitter", low=0, high=0.5)
        if "distractors" in value:
            value["distractors"] = check_int(value["distractors"], f"{key}.distractors", low=0, high=16)
        return cls(**value)


def add_distractors(spec: mujoco.MjSpec, n: int) -> None:
    """``n`` visual-only boxes on the world body (placed and coloured by ``randomize_visuals``)."""
    for i in range(n):
        spec.worldbody.add_geom(name=f"distractor{i}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.025, 0.025, 0.025],
                                pos=[TABLE_CENTER[0], TABLE_CENTER[1], TABLE_HEIGHT + 0.025], rgba=[0.8, 0.2, 0.2, 1],
                                contype=0, conaffinity=0)


def build_arena() -> mujoco.MjSpec:
    spec = mujoco.MjSpec()
    spec.option.timestep = 0.002
    spec.visual.global_.offwidth = 640
    spec.visual.global_.offheight = 640
    spec.visual.headlight.ambient = [0.3, 0.3, 0.3]
    world = spec.worldbody
    spec.add_texture(name="grid", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                     rgb1=[0.2, 0.25, 0.3], rgb2=[0.3, 0.35, 0.4], width=256, height=256)
    spec.add_material(name="floor", textures=["", "grid"], texrepeat=[6, 6])
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1], material="floor")
    cx, cy = TABLE_CENTER
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, size=[TABLE_HALF[0], TABLE_HALF[1], TABLE_HEIGHT / 2],
                   pos=[cx, cy, TABLE_HEIGHT / 2], rgba=[0.62, 0.5, 0.38, 1], friction=[1.0, 0.005, 0.0001])
    world.add_light(name="key", pos=[0.5, -0.5, 2.0], dir=[0, 0.3, -1], diffuse=[0.7, 0.7, 0.7], castshadow=False)
    world.add_light(name="fill", pos=[-0.5, 0.5, 2.0], dir=[0.3, -0.2, -1], diffuse=[0.3, 0.3, 0.3], castshadow=False)
    # front camera looking back at the robot over the table (the policy's view)
    world.add_camera(name="agentview", pos=[1.35, 0.0, 1.15], xyaxes=[0, 1, 0, -0.55, 0, 0.83], fovy=50)
    world.add_camera(name="sideview", pos=[0.55, -1.1, 1.0], xyaxes=[1, 0, 0, 0, 0.5, 0.87], fovy=55)
    # close, angled view of the pick area: a 4 cm cube is ~5 px at 64 px (agentview: ~3 px), and the
    # angle shows the gripper-cube offset along both table axes (a frontal view hides depth)
    world.add_camera(name="workspace", pos=[0.95, -0.45, 1.0], xyaxes=look_at([0.95, -0.45, 1.0], [0.53, 0.0, 0.45]), fovy=45)
    return spec


def look_at(pos, target) -> list[float]:
    """MuJoCo camera ``xyaxes`` for a camera at ``pos`` looking at ``target`` with the world z up."""
    forward = np.asarray(target, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    x = np.cross(forward, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    return [*x, *np.cross(x, forward)]


def randomize_visuals(model: mujoco.MjModel, base: dict, rnd: Randomization, rng: np.random.Generator) -> None:
    """Perturb lights, colours and camera pose in place from the saved ``base`` values."""
    model.light_diffuse[:] = base["light_diffuse"]
    model.light_pos[:] = base["light_pos"]
    model.cam_pos[:] = base["cam_pos"]
    model.geom_rgba[:] = base["geom_rgba"]
    if rnd.lighting:
        model.light_diffuse[:] = np.clip(base["light_diffuse"] * rng.uniform(0.6, 1.4, (model.nlight, 1)), 0, 1)
        model.light_pos[:] = base["light_pos"] + rng.uniform(-0.3, 0.3, base["light_pos"].shape)
    if rnd.colors:
        for name in ("table", "floor"):
            gid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)
            model.geom_rgba[gid, :3] = np.clip(base["geom_rgba"][gid, :3] + rng.uniform(-0.2, 0.2, 3), 0, 1)
    if rnd.camera_jitter > 0:
        model.cam_pos[:] = base["cam_pos"] + rng.uniform(-rnd.camera_jitter, rnd.camera_jitter, base["cam_pos"].shape)
    for i in range(rnd.distractors):
        gid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, f"distractor{i}")
        half = np.array(TABLE_HALF) - 0.05
        model.geom_pos[gid, :2] = np.array(TABLE_CENTER) + rng.uniform(-half, half)
        model.geom_rgba[gid, :3] = rng.uniform(0, 1, 3)


def visual_defaults(model: mujoco.MjModel) -> dict:
    return {"light_diffuse": model.light_diffuse.copy(), "light_pos": model.light_pos.copy(), "cam_pos": model.cam_pos.copy(),
            "geom_rgba": model.geom_rgba.copy()}
