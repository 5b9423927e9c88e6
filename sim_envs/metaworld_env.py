"""CortexBench's MetaWorld tasks (assembly, bin-picking, button-press-topdown, drawer-open, hammer) behind
the project's observation contract, with metaworld's scripted experts for demonstrations.

    from toto_robot.sim_envs import make_env
    env = make_env("mw_drawer_open", image_size=256)
    obs, info = env.reset(seed=0)   # {"image": uint8 [S, S, 3], "state": float32 [4]}

* Task: metaworld 3.1.1's ``<task>-v3-goal-observable`` env (CortexBench used the same tasks' v2), the
  object and goal placement drawn from the reset seed (``seeded_rand_vec``), so an episode is reproducible
  from its seed. ``metaworld_compat.patch_metaworld`` makes it run under MuJoCo 4.
* Observation: ``image`` from ``camera`` (default ``corner2``; CortexBench's ``top_cap2`` exists only in
  its own metaworld fork), ``state`` = CortexBench's proprioception, the first 4 numbers of metaworld's
  observation: end-effector xyz and gripper opening.
* Action: metaworld's ``Box(-1, 1, (4,))``: end-effector delta xyz (mocap) + gripper effort.
* Episode: ``max_steps`` = 500 (CortexBench's horizon); ``info["success"]`` is metaworld's success flag.
  With ``terminate_on_success`` (default) the episode ends at the first success: success "at any step",
  which is how the benchmark counts it, without rendering the steps after it.
* Rendering: metaworld's corner cameras are mounted upside down (mujoco-py's flipped read-back hid it), so
  a camera whose up axis points down is turned 180 degrees (no mirroring); a ``mujoco.Renderer`` of its own with shadows, reflections, skybox and multisampling off
  (a software rasteriser spends most of a frame on those), and the render meshes simplified to a
  ``mesh_cell`` = 1 cm vertex grid (``render_lod.py``: the Sawyer's 67k triangles become ~14k; the physics
  is bit-identical, a 64 px frame differs from the full-mesh one by 0.3/255 on average);
  ``benchmarks/bench_metaworld.py`` measures both.
"""
from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from toto_robot.sim_envs.metaworld_compat import patch_metaworld
from toto_robot.sim_envs.render_lod import simplify_render_meshes
from toto_robot.utils.config import ConfigError

# project task name -> metaworld env name (v3, as metaworld 3.1.1 spells them)
METAWORLD_TASKS = {
    "mw_assembly": "assembly-v3",
    "mw_bin_picking": "bin-picking-v3",
    "mw_button_press_topdown": "button-press-topdown-v3",
    "mw_drawer_open": "drawer-open-v3",
    "mw_hammer": "hammer-v3",
}
PROPRIO_DIM = 4  # CortexBench's metaworld proprioception: obs[:4]
MESH_CELL = 0.01  # metres: render meshes simplified to this vertex grid (None/0: metaworld's full meshes)


class MetaWorldEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}  # metaworld: 5 substeps of 2.5 ms

    def __init__(self, task: str = "mw_drawer_open", image_size: int = 256, camera: str = "corner2", max_steps: int = 500,
                 terminate_on_success: bool = True, render_mode: str | None = "rgb_array", randomization: dict | None = None,
                 mesh_cell: float | None = MESH_CELL):
        if task not in METAWORLD_TASKS:
            raise ConfigError(f"unknown MetaWorld task {task!r}; known: {sorted(METAWORLD_TASKS)}")
        if randomization:
            raise ConfigError("MetaWorld tasks take no visual randomization (their placement is drawn from the reset seed)")
        if not 1 <= int(max_steps) <= 500:
            raise ConfigError(f"max_steps must be in 1..500 (metaworld's path length), got {max_steps}")
        patch_metaworld()
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

        self.task, self.mw_name = task, METAWORLD_TASKS[task]
        self.image_size, self.max_steps, self.terminate_on_success = int(image_size), int(max_steps), terminate_on_success
        self.render_mode = render_mode
        self.mw = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{self.mw_name}-goal-observable"]()
        self.mw._freeze_rand_vec = False  # a new placement at every reset ...
        self.mw.seeded_rand_vec = True  # ... drawn from the env's seeded generator
        self.mw.max_path_length = self.max_steps
        self.model, self.data = self.mw.model, self.mw.data
        self.mesh_cell = float(mesh_cell) if mesh_cell else None
        # the camera draws the arm's meshes on a 1 cm vertex grid (render_lod.py): ~4x the frames/s, physics untouched
        self.lod = simplify_render_meshes(self.model, cell=self.mesh_cell) if self.mesh_cell else None
        cameras = [mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(self.model.ncam)]
        if camera not in cameras:
            raise ConfigError(f"unknown camera {camera!r}; this scene has {', '.join(c for c in cameras if c)}")
        self.camera = camera
        self.control = "mocap_delta"  # continuous gripper effort (BC does not snap it to +-1 as for ee_delta)
        self._renderer: mujoco.Renderer | None = None
        self._mw_obs: np.ndarray | None = None
        self.steps = 0
        self.observation_space = spaces.Dict({"image": spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8),
                                              "state": spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32)})
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)

    @property
    def mw_obs(self) -> np.ndarray:
        """metaworld's full 39-number observation (what its scripted policies read)."""
        if self._mw_obs is None:
            raise RuntimeError("call reset() first")
        return self._mw_obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.mw.seed(int(seed))
        self._mw_obs, _ = self.mw.reset()
        self.steps = 0
        return self._obs(), {"success": False}

    def step(self, action):
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (4,):
            raise ValueError(f"action must have shape (4,), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN/inf: {a}")
        self._mw_obs, reward, _, truncated, info = self.mw.step(np.clip(a, -1, 1))
        self.steps += 1
        success = bool(info.get("success", 0.0))
        terminated = success and self.terminate_on_success
        truncated = bool(truncated) or self.steps >= self.max_steps
        return self._obs(), float(reward), terminated, truncated and not terminated, {"success": success}

    def _obs(self) -> dict:
        return {"image": self.render(), "state": self._mw_obs[:PROPRIO_DIM].astype(np.float32)}

    def render(self) -> np.ndarray:
        if self._renderer is None:
            self.model.vis.quality.offsamples = 0  # no multisampling (read when the context is made)
            self._renderer = mujoco.Renderer(self.model, self.image_size, self.image_size)
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
        self._renderer.update_scene(self.data, camera=self.camera)
        img = self._renderer.render()
        cam_up = self.data.cam_xmat[self.model.camera(self.camera).id].reshape(3, 3)[:, 1]  # the image's up axis in the world
        return np.ascontiguousarray(img[::-1, ::-1]) if cam_up[2] < 0 else img.copy()  # upright: the table below, as a person sees it

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def make_expert(self, noise: float = 0.0, rng: np.random.Generator | None = None) -> "MetaWorldExpert":
        return MetaWorldExpert(self, noise, rng)


class MetaWorldExpert:
    """metaworld's scripted policy for the task (``metaworld.policies``), reading the env's full state
    observation, with optional Gaussian exploration noise; ``act(obs) -> action`` like the project's experts."""

    def __init__(self, env: MetaWorldEnv, noise: float = 0.0, rng: np.random.Generator | None = None):
        from metaworld.policies import ENV_POLICY_MAP

        self.env, self.noise = env, float(noise)
        self.rng = rng or np.random.default_rng(0)
        self.policy = ENV_POLICY_MAP[env.mw_name]()

    def act(self, obs: dict | None = None) -> np.ndarray:
        import warnings

        with warnings.catch_warnings():  # "Constant(s) may be too high": the env clips, as metaworld intends
            warnings.simplefilter("ignore", UserWarning)
            a = np.asarray(self.policy.get_action(self.env.mw_obs), dtype=np.float32)
        if self.noise:
            a = a + self.rng.normal(0, self.noise, a.shape).astype(np.float32)
        return np.clip(a, -1, 1)
