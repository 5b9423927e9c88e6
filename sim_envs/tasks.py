"""Tasks: what is on the table, the shaped reward and the success test. The env does the rest."""
from __future__ import annotations

import mujoco
import numpy as np

from toto_robot.sim_envs.arena import TABLE_HEIGHT

COLORS = np.array([[0.85, 0.2, 0.2], [0.2, 0.7, 0.3], [0.2, 0.4, 0.9], [0.95, 0.8, 0.2], [0.6, 0.25, 0.75]])


def grid_cell(xy, low, high, n: int = 3) -> int:
    """Row-major cell (x major) of the point ``xy`` on an ``n x n`` grid over [low, high] in x and y; points
    outside the range count in the edge cells."""
    frac = (np.asarray(xy, dtype=float)[:2] - np.asarray(low, dtype=float)) / (np.asarray(high, dtype=float) - np.asarray(low, dtype=float))
    cx, cy = np.clip(frac * n, 0, n - 1).astype(int)
    return int(n * cx + cy)


class Task:
    name = ""
    max_steps = 80
    # x, y range that reset draws the task's object from ((x0, y0), (x1, y1)); None: nothing to locate.
    # A task that sets it also defines object_pos(env): the world position of that object.
    position_range: tuple[tuple[float, float], tuple[float, float]] | None = None
    has_colours = False  # label() is the object's colour (an index into COLORS)

    def build(self, spec: mujoco.MjSpec) -> None:
        """Add this task's objects to the world."""

    def reset(self, env, rng: np.random.Generator) -> None:
        """Randomize object pose/size/colour in ``env.model``/``env.data`` (after the robot is homed)."""

    def reward(self, env) -> float:
        return 0.0

    def success(self, env) -> bool:
        return False

    def label(self, env) -> int:
        """A discrete label of what the scene shows (used by probes)."""
        return 0


class PickTask(Task):
    """A cube on the table; success = lifted ``lift_height`` above the table for ``hold_steps`` steps."""

    name = "pick"
    max_steps = 60
    position_range = ((0.45, -0.15), (0.62, 0.15))
    has_colours = True

    def __init__(self, lift_height: float = 0.08, hold_steps: int = 3):
        self.lift_height, self.hold_steps = lift_height, hold_steps
        self.held = 0
        self.color = 0

    def build(self, spec):
        cube = spec.worldbody.add_body(name="cube", pos=[0.55, 0, TABLE_HEIGHT + 0.025])
        cube.add_freejoint(name="cube_joint")
        cube.add_geom(name="cube_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.022] * 3, rgba=[0.85, 0.2, 0.2, 1],
                      friction=[2.0, 0.01, 0.001], mass=0.05, condim=4)

    def reset(self, env, rng):
        m, d = env.model, env.data
        gid = m.geom("cube_geom").id
        half = rng.uniform(0.018, 0.024)
        m.geom_size[gid] = half
        m.geom_rbound[gid] = half * np.sqrt(3)
        self.color = int(rng.integers(len(COLORS)))
        m.geom_rgba[gid, :3] = COLORS[self.color]
        (x0, y0), (x1, y1) = self.position_range
        x, y, yaw = rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(-np.pi / 4, np.pi / 4)
        adr = m.jnt_qposadr[m.joint("cube_joint").id]
        d.qpos[adr:adr + 7] = [x, y, TABLE_HEIGHT + half + 0.001, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        self.held = 0

    def cube_pos(self, env) -> np.ndarray:
        return env.data.body("cube").xpos.copy()

    object_pos = cube_pos

    def cube_height(self, env) -> float:
        half = env.model.geom_size[env.model.geom("cube_geom").id][0]
        return float(self.cube_pos(env)[2] - half - TABLE_HEIGHT)

    def reward(self, env):
        """Shaping in [-3, 0] (reach the cube, then lift it) and +10 on success. Every step before
        success costs something, so ending the episode by succeeding pays (a positive per-step reward
        with termination on success would pay a PPO policy to hold the cube just below the goal)."""
        dist = np.linalg.norm(env.grip_pos() - self.cube_pos(env))
        reach = 1 - np.tanh(10 * dist)
        lift = np.clip(self.cube_height(env) / self.lift_height, 0, 1)
        return float(reach + 2 * lift * (dist < 0.05) - 3 + 10 * self.success(env))

    def after_step(self, env):
        self.held = self.held + 1 if self.cube_height(env) > self.lift_height else 0

    def success(self, env):
        return self.held >= self.hold_steps

    def label(self, env):
        return self.color


class CabinetTask(Task):
    """A cabinet with a drawer facing the robot; success = drawer pulled open beyond ``open_distance``."""

    name = "cabinet"
    max_steps = 70
    position_range = ((0.76, -0.1), (0.82, 0.1))
    has_colours = True
    HANDLE_OFFSET = 0.09  # handle bar sits this far in front of the drawer face

    def __init__(self, open_distance: float = 0.12):
        self.open_distance = open_distance
        self.color = 0

    def build(self, spec):
        G = mujoco.mjtGeom.mjGEOM_BOX
        cab = spec.worldbody.add_body(name="cabinet", pos=[0.78, 0, TABLE_HEIGHT])
        wood = [0.45, 0.3, 0.2, 1]
        w, h, dpt = 0.16, 0.1, 0.14  # half width (y), half height, half depth (x)
        cab.add_geom(name="cab_top", type=G, size=[dpt, w, 0.01], pos=[0, 0, 2 * h + 0.01], rgba=wood)
        cab.add_geom(name="cab_bottom", type=G, size=[dpt, w, 0.01], pos=[0, 0, 0.01], rgba=wood)
        cab.add_geom(name="cab_left", type=G, size=[dpt, 0.01, h], pos=[0, w - 0.01, h + 0.01], rgba=wood)
        cab.add_geom(name="cab_right", type=G, size=[dpt, 0.01, h], pos=[0, -w + 0.01, h + 0.01], rgba=wood)
        cab.add_geom(name="cab_back", type=G, size=[0.01, w, h], pos=[dpt - 0.01, 0, h + 0.01], rgba=wood)
        drawer = cab.add_body(name="drawer", pos=[0, 0, 0.03])
        drawer.add_joint(name="drawer_slide", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[-1, 0, 0], range=[0, 0.22], damping=2.0, limited=True)
        face = [0.8, 0.75, 0.6, 1]
        drawer.add_geom(name="drawer_face", type=G, size=[0.01, w - 0.025, h - 0.03], pos=[-dpt + 0.01, 0, h - 0.02], rgba=face, mass=0.3)
        drawer.add_geom(name="drawer_bottom", type=G, size=[dpt - 0.03, w - 0.03, 0.005], pos=[0, 0, 0.005], rgba=face, mass=0.2)
        drawer.add_geom(name="drawer_lside", type=G, size=[dpt - 0.03, 0.005, 0.05], pos=[0, w - 0.035, 0.05], rgba=face, mass=0.05)
        drawer.add_geom(name="drawer_rside", type=G, size=[dpt - 0.03, 0.005, 0.05], pos=[0, -w + 0.035, 0.05], rgba=face, mass=0.05)
        hx = -dpt - self.HANDLE_OFFSET
        metal = [0.75, 0.75, 0.8, 1]
        drawer.add_geom(name="handle_bar", type=mujoco.mjtGeom.mjGEOM_CAPSULE, fromto=[hx, -0.14, h + 0.02, hx, 0.14, h + 0.02], size=[0.01, 0, 0],
                        rgba=metal, mass=0.05)
        for side, y in (("l", 0.13), ("r", -0.13)):  # wide enough for a gripper between the posts
            drawer.add_geom(name=f"handle_post_{side}", type=G, size=[self.HANDLE_OFFSET / 2, 0.008, 0.008], pos=[hx + self.HANDLE_OFFSET / 2, y, h + 0.02],
                            rgba=metal, mass=0.02)
        drawer.add_site(name="handle_site", pos=[hx, 0, h + 0.02], size=[0.01, 0, 0])

    def reset(self, env, rng):
        m = env.model
        (x0, y0), (x1, y1) = self.position_range
        m.body_pos[m.body("cabinet").id] = [rng.uniform(x0, x1), rng.uniform(y0, y1), TABLE_HEIGHT]
        self.color = int(rng.integers(len(COLORS)))
        m.geom_rgba[m.geom("drawer_face").id, :3] = COLORS[self.color]

    def object_pos(self, env) -> np.ndarray:
        return env.data.body("cabinet").xpos.copy()

    def opening(self, env) -> float:
        return float(env.data.joint("drawer_slide").qpos[0])

    def handle_pos(self, env) -> np.ndarray:
        return env.data.site("handle_site").xpos.copy()

    def hook_pos(self, env) -> np.ndarray:
        """Point between the handle bar and the drawer face, where a closed gripper can pull."""
        return self.handle_pos(env) + np.array([self.HANDLE_OFFSET / 2, 0, 0])

    def reward(self, env):
        """Shaping in [-6, 0] (reach the handle, then pull) and +10 on success; as for pick, every step
        before success costs, so opening the drawer sooner pays more."""
        reach = 1 - np.tanh(10 * np.linalg.norm(env.grip_pos() - self.hook_pos(env)))
        pulled = min(self.opening(env) / self.open_distance, 1.0)
        return float(reach + 5 * pulled - 6 + 10 * self.success(env))

    def success(self, env):
        return self.opening(env) > self.open_distance

    def label(self, env):
        return self.color


class ReachTask(Task):
    """MVP's reach: a target sphere floats over the table, seen only in the image (the proprioception
    holds the arm, not the target); success = the gripper within ``success_distance`` of it.

    Targets appear anywhere over the table at one height (``TARGET_HEIGHT`` above it). From one camera
    a point's depth along the view ray is ambiguous: with heights drawn too (5-30 cm), a pool trained
    with supervision on 2000 frames placed the target within 4 cm of the truth in 47% of held-out frames
    (64 px, Toto-tiny tokens); at one height, in 97%. PPO learns from a far noisier signal than that."""

    name = "reach"
    max_steps = 50
    TARGET_HEIGHT = 0.08
    RANGE_LOW = np.array([0.4, -0.25, TABLE_HEIGHT + TARGET_HEIGHT])  # where targets appear (inside the env's workspace)
    RANGE_HIGH = np.array([0.7, 0.25, TABLE_HEIGHT + TARGET_HEIGHT])
    position_range = (tuple(RANGE_LOW[:2]), tuple(RANGE_HIGH[:2]))

    def __init__(self, success_distance: float = 0.04):
        self.success_distance = success_distance

    def build(self, spec):
        target = spec.worldbody.add_body(name="reach_target", pos=[0.55, 0, TABLE_HEIGHT + 0.15])
        target.add_geom(name="reach_target_geom", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.03, 0, 0], rgba=[0.9, 0.15, 0.15, 1],
                        contype=0, conaffinity=0)  # seen, never touched

    def reset(self, env, rng):
        while True:  # never within twice the success distance of the homed gripper, nor behind the arm from the front cameras
            target = rng.uniform(self.RANGE_LOW, self.RANGE_HIGH)
            behind_arm = target[0] < 0.54 and abs(target[1]) < 0.09
            if np.linalg.norm(target - env.grip_pos()) > 2 * self.success_distance and not behind_arm:
                break
        env.model.body_pos[env.model.body("reach_target").id] = target

    def target_pos(self, env) -> np.ndarray:
        return env.data.body("reach_target").xpos.copy()

    object_pos = target_pos

    def distance(self, env) -> float:
        return float(np.linalg.norm(env.grip_pos() - self.target_pos(env)))

    def reward(self, env):
        """-10 x distance in metres, +10 on success (MVP's reach rewards minus the distance). Every step
        before success costs, so ending the episode at the target pays: a positive per-step reward
        (1 - tanh) would pay a policy to hover near the target instead."""
        return float(-10 * self.distance(env) + 10 * self.success(env))

    def success(self, env):
        return self.distance(env) < self.success_distance

    def label(self, env):
        """3 x 3 cell of the target over its reset range in x and y."""
        return grid_cell(self.target_pos(env), *self.position_range)


TASKS = {"pick": PickTask, "cabinet": CabinetTask, "reach": ReachTask}
