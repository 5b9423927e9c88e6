"""One gymnasium env for every robot x task (robosuite-style robot / arena / task split).

Observation: ``{"image": uint8 [S, S, 3], "state": float32 [19]}`` (+ ``"wrist_image"``), state =
arm joint positions (7), velocities (7), finger positions (2), gripper site position (3). With
``privileged=True`` also ``"privileged"``: what the simulator knows and the camera must find (the
task's object position, then every non-robot joint's positions and velocities), for a critic that
trains in simulation only (asymmetric actor-critic, Pinto et al. 2018); a policy never reads it.
Action (``control="ee_delta"``): ``Box(-1, 1, (4,))`` = end-effector delta xyz (x ``max_delta``
metres) + gripper (-1 open, +1 closed), tracked by damped-least-squares IK on joint position
servos; ``control="joint_delta"``: ``Box(-1, 1, (8,))`` = 7 joint deltas (x ``max_joint_delta``) +
gripper. ``info["success"]`` is the task's sparse success flag; the reward is dense.

Rendering: the robots' collision meshes stand in for their visual meshes, and every render mesh is
drawn on a ``mesh_cell`` vertex grid (1 cm; ``render_lod.py``; physics untouched). At 64 px that gave
1.6-1.9x the env steps/s of full meshes on Franka pick and reach and 2.6-3.4x on Kuka (Franka cabinet
about the same) in ``benchmarks/bench_envs.py``.
"""
from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from toto_robot.sim_envs.arena import Randomization, add_distractors, build_arena, randomize_visuals, visual_defaults
from toto_robot.sim_envs.render_lod import simplify_render_meshes
from toto_robot.sim_envs.robots import GRIPPER_PREFIX, PREFIX, ROBOTS, build_robot_spec
from toto_robot.sim_envs.tasks import TASKS
from toto_robot.utils.config import ConfigError

CONTROL_DT = 0.05  # 20 Hz control
# Cameras on the robot's hand, by name -> vertical field of view (degrees). One mount for both: 5 cm in front
# of the hand, level with it, looking straight down past the fingertips, which sit at the image's left edge
# (the eef frame's z points down the fingers). "wrist": the eye-in-hand view Franka pick is learnt from;
# "hand": MVP's egocentric view (PixMC: on the hand, a 120-degree lens), the whole table in view from above it.
ROBOT_CAMERAS = {"wrist": 75, "hand": 120}
WORKSPACE_LOW = np.array([0.3, -0.35, 0.41])
WORKSPACE_HIGH = np.array([0.8, 0.35, 0.9])
MESH_CELL = 0.01  # metres: render meshes simplified to this vertex grid (None/0: full meshes)


class ManipulationEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": int(1 / CONTROL_DT)}

    def __init__(self, robot: str = "franka", task: str = "pick", image_size: int = 128, camera: str = "agentview",
                 wrist_camera: bool = False, control: str = "ee_delta", max_steps: int | None = None,
                 randomization: Randomization | dict | None = None, render_mode: str | None = "rgb_array",
                 max_delta: float = 0.03, max_joint_delta: float = 0.05, mesh_cell: float | None = MESH_CELL,
                 privileged: bool = False, extra_cameras: list[str] | tuple[str, ...] = ()):
        if robot not in ROBOTS:
            raise ConfigError(f"unknown robot {robot!r}; known: {sorted(ROBOTS)}")
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}; known: {sorted(TASKS)}")
        if control not in ("ee_delta", "joint_delta"):
            raise ConfigError(f"control must be ee_delta or joint_delta, got {control!r}")
        self.robot, self.task = ROBOTS[robot], TASKS[task]()
        self.image_size, self.camera, self.control = image_size, camera, control
        # more views rendered beside obs["image"], each as obs["<name>_image"] (wrist_camera=True: the wrist view)
        self.extra_cameras = list(dict.fromkeys([*extra_cameras, *(["wrist"] if wrist_camera else [])]))
        self.wrist_camera = "wrist" in self.extra_cameras
        self.max_steps = max_steps or self.task.max_steps
        self.randomization = Randomization.from_config(randomization)
        self.render_mode, self.max_delta, self.max_joint_delta = render_mode, max_delta, max_joint_delta

        spec = build_arena()
        robot_spec = build_robot_spec(self.robot)
        for name, fovy in ROBOT_CAMERAS.items():  # the view asked for, and the wrist view for obs["wrist_image"]
            if name == camera or name in self.extra_cameras:
                robot_spec.body(f"{GRIPPER_PREFIX}eef").add_camera(name=name, pos=[0, 0.05, -0.097], quat=[0, 0.7071068, 0.7071068, 0], fovy=fovy)
        spec.worldbody.add_frame(pos=[0, 0, 0.4]).attach_body(robot_spec.body("base"), PREFIX, "")
        self.task.build(spec)
        add_distractors(spec, self.randomization.distractors)
        self.model = spec.compile()
        # a software rasteriser spends a small frame on triangles: draw the meshes on a coarser vertex grid
        self.mesh_cell = float(mesh_cell) if mesh_cell else None
        self.lod = simplify_render_meshes(self.model, cell=self.mesh_cell) if self.mesh_cell else None
        cameras = [mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(self.model.ncam)]
        self.camera = PREFIX + camera if camera in ROBOT_CAMERAS else camera  # robot cameras carry the robot's prefix
        known = ', '.join([*ROBOT_CAMERAS, *(c for c in cameras if not c.startswith(PREFIX))])
        if self.camera not in cameras:
            raise ConfigError(f"unknown camera {camera!r}; this scene has {known}")
        self._extra = {f"{name}_image": PREFIX + name if name in ROBOT_CAMERAS else name for name in self.extra_cameras}  # obs key -> camera
        bad = [name for name, cam in zip(self.extra_cameras, self._extra.values()) if cam not in cameras]
        if bad:
            raise ConfigError(f"unknown extra camera {bad[0]!r}; this scene has {known}")
        self.data = mujoco.MjData(self.model)
        self.n_substeps = int(round(CONTROL_DT / self.model.opt.timestep))
        m = self.model
        self.arm_joints = np.array([m.joint(PREFIX + j).id for j in self.robot.joints])
        self.arm_qadr = m.jnt_qposadr[self.arm_joints]
        self.arm_dadr = m.jnt_dofadr[self.arm_joints]
        self.arm_act = np.array([m.actuator(f"{PREFIX}servo_{j}").id for j in self.robot.joints])
        fingers = [f"{PREFIX}{GRIPPER_PREFIX}finger_joint1", f"{PREFIX}{GRIPPER_PREFIX}finger_joint2"]
        self.finger_qadr = m.jnt_qposadr[[m.joint(f).id for f in fingers]]
        self.finger_act = np.array([m.actuator(f"{PREFIX}{GRIPPER_PREFIX}gripper_finger_joint{i}").id for i in (1, 2)])
        self.site = m.site(f"{PREFIX}{GRIPPER_PREFIX}grip_site").id
        self.visual_base = visual_defaults(m)
        self._renderer: mujoco.Renderer | None = None
        # Render the robots' collision meshes (group 0) instead of their high-poly visual meshes
        # (group 1): 5x faster with a software rasteriser, and sites stay hidden.
        self._scene_option = mujoco.MjvOption()
        self._scene_option.geomgroup[1] = 0
        self._scene_option.sitegroup[:] = 0
        robot_joints = set(self.arm_joints.tolist()) | {m.joint(f).id for f in fingers}
        others = [j for j in range(m.njnt) if j not in robot_joints]  # the task's objects: free, hinge, slide joints
        width = np.diff(np.append(m.jnt_qposadr, m.nq))  # qpos entries per joint (joints are stored in order)
        dof_width = np.diff(np.append(m.jnt_dofadr, m.nv))
        self._object_qpos = np.concatenate([np.arange(m.jnt_qposadr[j], m.jnt_qposadr[j] + width[j]) for j in others] or [np.zeros(0, int)])
        self._object_qvel = np.concatenate([np.arange(m.jnt_dofadr[j], m.jnt_dofadr[j] + dof_width[j]) for j in others] or [np.zeros(0, int)])
        self.privileged = privileged

        img = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        obs = {"image": img, "state": spaces.Box(-np.inf, np.inf, (19,), np.float32)}
        for key in self._extra:
            obs[key] = img
        if privileged:
            obs["privileged"] = spaces.Box(-np.inf, np.inf, self.privileged_state().shape, np.float32)
        self.observation_space = spaces.Dict(obs)
        self.action_space = spaces.Box(-1.0, 1.0, (4 if control == "ee_delta" else 8,), np.float32)
        self._home()
        self.steps = 0

    # ---- robot helpers ----
    def _home(self) -> None:
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self.arm_qadr] = self.robot.home
        self.data.ctrl[self.arm_act] = self.robot.home
        self._set_gripper(-1.0)
        mujoco.mj_forward(self.model, self.data)
        self.target_pos = self.grip_pos()
        self.target_quat = np.empty(4)
        mujoco.mju_mat2Quat(self.target_quat, self.data.site_xmat[self.site])

    def grip_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.site].copy()

    def gripper_width(self) -> float:
        return float(self.data.qpos[self.finger_qadr[0]] - self.data.qpos[self.finger_qadr[1]])

    def _set_gripper(self, g: float) -> None:
        opening = 0.04 * (1 - np.clip(g, -1, 1)) / 2  # -1 open (0.04), +1 closed (0)
        self.data.ctrl[self.finger_act] = [opening, -opening]

    def _ik(self, target_pos: np.ndarray, iters: int = 3) -> np.ndarray:
        """Joint targets reaching ``target_pos`` with the initial gripper orientation (damped least squares)."""
        m, d = self.model, self.data
        q = d.qpos.copy()
        jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        scratch = mujoco.MjData(m) if not hasattr(self, "_scratch") else self._scratch
        self._scratch = scratch
        scratch.qpos[:] = q
        for _ in range(iters):
            mujoco.mj_kinematics(m, scratch)
            mujoco.mj_comPos(m, scratch)
            err_p = target_pos - scratch.site_xpos[self.site]
            cur = np.empty(4)
            mujoco.mju_mat2Quat(cur, scratch.site_xmat[self.site])
            neg, dq_rot = np.empty(4), np.empty(3)
            mujoco.mju_negQuat(neg, cur)
            err_q = np.empty(4)
            mujoco.mju_mulQuat(err_q, self.target_quat, neg)
            mujoco.mju_quat2Vel(dq_rot, err_q, 1.0)
            mujoco.mj_jacSite(m, scratch, jacp, jacr, self.site)
            J = np.vstack([jacp, jacr])[:, self.arm_dadr]  # (6, 7)
            e = np.concatenate([err_p, 0.5 * dq_rot])
            dq = J.T @ np.linalg.solve(J @ J.T + 1e-4 * np.eye(6), e)
            scratch.qpos[self.arm_qadr] += dq
        lo, hi = m.jnt_range[self.arm_joints].T
        return np.clip(scratch.qpos[self.arm_qadr], lo, hi)

    # ---- gym API ----
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._home()
        randomize_visuals(self.model, self.visual_base, self.randomization, self.np_random)
        self.task.reset(self, self.np_random)
        mujoco.mj_forward(self.model, self.data)
        for _ in range(10):  # let objects settle
            mujoco.mj_step(self.model, self.data)
        self.steps = 0
        return self._obs(), {"success": False, "label": self.task.label(self)}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN/inf: {a}")
        a = np.clip(a, -1, 1)
        if self.control == "ee_delta":
            # the target is relative to where the gripper is now (no hidden wind-up state: Markov for policies)
            self.target_pos = np.clip(self.grip_pos() + a[:3] * self.max_delta, WORKSPACE_LOW, WORKSPACE_HIGH)
            self.data.ctrl[self.arm_act] = self._ik(self.target_pos)
        else:
            lo, hi = self.model.jnt_range[self.arm_joints].T
            self.data.ctrl[self.arm_act] = np.clip(self.data.qpos[self.arm_qadr] + a[:7] * self.max_joint_delta, lo, hi)
        self._set_gripper(a[-1])
        for _ in range(self.n_substeps):
            mujoco.mj_step(self.model, self.data)
        self.steps += 1
        if hasattr(self.task, "after_step"):
            self.task.after_step(self)
        success = bool(self.task.success(self))
        reward = self.task.reward(self)
        truncated = self.steps >= self.max_steps
        return self._obs(), reward, success, truncated, {"success": success, "label": self.task.label(self)}

    def _state(self) -> np.ndarray:
        d = self.data
        return np.concatenate([d.qpos[self.arm_qadr], d.qvel[self.arm_dadr], d.qpos[self.finger_qadr], self.grip_pos()]).astype(np.float32)

    def _render_camera(self, camera: str) -> np.ndarray:
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.image_size, self.image_size)
        self._renderer.update_scene(self.data, camera=camera, scene_option=self._scene_option)
        return self._renderer.render().copy()

    def _obs(self) -> dict:
        obs = {"image": self._render_camera(self.camera), "state": self._state()}
        for key, cam in self._extra.items():
            obs[key] = self._render_camera(cam)
        if self.privileged:
            obs["privileged"] = self.privileged_state()
        return obs

    def privileged_state(self) -> np.ndarray:
        """[object position (3, tasks with one), object joints' qpos, object joints' qvel]: the simulator's truth
        about the task's objects, which the image shows and the proprioception does not."""
        d = self.data
        pos = self.task.object_pos(self) if self.task.position_range is not None else np.zeros(0)
        return np.concatenate([pos, d.qpos[self._object_qpos], d.qvel[self._object_qvel]]).astype(np.float32)

    def render(self):
        return self._render_camera(self.camera)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ---- state contract (robomimic style) ----
    def get_state(self) -> dict:
        return {"qpos": self.data.qpos.copy(), "qvel": self.data.qvel.copy(), "ctrl": self.data.ctrl.copy(), "target_pos": self.target_pos.copy(),
                "steps": self.steps, "model": {k: v.copy() for k, v in (("body_pos", self.model.body_pos), ("geom_size", self.model.geom_size),
                                                                          ("geom_rgba", self.model.geom_rgba), ("geom_rbound", self.model.geom_rbound))}}

    def reset_to(self, state: dict) -> dict:
        for k, v in state["model"].items():
            getattr(self.model, k)[:] = v
        self.data.qpos[:], self.data.qvel[:], self.data.ctrl[:] = state["qpos"], state["qvel"], state["ctrl"]
        self.target_pos, self.steps = state["target_pos"].copy(), state["steps"]
        mujoco.mj_forward(self.model, self.data)
        return self._obs()
