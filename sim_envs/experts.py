"""Scripted experts with privileged state (object poses): demonstrations and pre-training videos.

Each expert is a small phase machine over end-effector targets; ``act`` returns an action in the
env's ``ee_delta`` space. ``noise`` adds Gaussian noise to the motion (diverse videos, DART's demos), by default in
the phases where the expert travels (not while it descends onto, grasps or pulls an object); ``noise_all=True`` adds it
on every step, so the demonstrations also show the way back from a grasp gone off target.
"""
from __future__ import annotations

import numpy as np

from toto_robot.sim_envs.tasks import CabinetTask, PickTask, ReachTask


def _toward(env, target: np.ndarray, gripper: float, gain: float = 1.0) -> np.ndarray:
    delta = (target - env.grip_pos()) / env.max_delta * gain
    return np.concatenate([np.clip(delta, -1, 1), [gripper]]).astype(np.float32)


class _Expert:
    """What every scripted expert shares: its env, and Gaussian noise on the motion (``perturb``)."""

    def __init__(self, env, noise: float = 0.0, rng: np.random.Generator | None = None, noise_all: bool = False):
        self.env, self.noise, self.rng, self.noise_all = env, noise, rng or np.random.default_rng(0), noise_all
        self.reset()

    def reset(self):
        pass

    def perturb(self, a: np.ndarray, travelling: bool) -> np.ndarray:
        """``a`` with noise on its motion (xyz) where the expert travels, or on every step with ``noise_all``."""
        if self.noise and (self.noise_all or travelling):
            a[:3] = np.clip(a[:3] + self.rng.normal(0, self.noise, 3), -1, 1)
        return a


class PickExpert(_Expert):
    def reset(self):
        self.phase, self.count = "above", 0

    def act(self, obs=None) -> np.ndarray:
        env, task = self.env, self.env.task
        cube = task.cube_pos(env)
        grip = env.grip_pos()
        if self.phase == "above":
            a = _toward(env, cube + [0, 0, 0.08], -1)
            if np.linalg.norm((grip - cube)[:2]) < 0.012 and abs(grip[2] - cube[2] - 0.08) < 0.03:
                self.phase = "descend"
        elif self.phase == "descend":
            a = _toward(env, cube + [0, 0, -0.005], -1)
            if grip[2] - cube[2] < 0.008:
                self.phase = "close"
        elif self.phase == "close":
            a = _toward(env, cube + [0, 0, -0.005], 1)
            self.count += 1
            if self.count >= 5:
                self.phase = "lift"
        else:
            a = _toward(env, np.array([cube[0], cube[1], 0.62]), 1)
            a[:2] = 0
        return self.perturb(a, self.phase in ("above", "lift"))


class PickCorrector(_Expert):
    """A memoryless pick expert: the action from the current state alone, for labelling states another policy reached
    (DAgger). ``PickExpert``'s phases remember what it did, so a state the policy reached by another path gets whatever
    its phase happens to be; here the same state always gets the same action. Closed on the cube -> lift; at the cube,
    aligned -> close; aligned above it -> descend, open; off target -> over the cube, open, rising first when low (the
    fingers would sweep the cube aside)."""

    def act(self, obs=None) -> np.ndarray:
        env, task = self.env, self.env.task
        cube, grip = task.cube_pos(env), env.grip_pos()
        side = 2 * float(env.model.geom_size[env.model.geom("cube_geom").id][0])  # the cube's width
        xy, dz = float(np.linalg.norm((grip - cube)[:2])), float(grip[2] - cube[2])
        width = env.gripper_width()
        at_cube = xy < 0.012  # descending or closing: no noise there, as PickExpert
        if xy < 0.02 and abs(dz) < 0.03 and side - 0.008 < width < side + 0.002:  # the fingers closed on the cube
            a = _toward(env, np.array([cube[0], cube[1], 0.62]), 1)
            a[:2] = 0
            at_cube = False  # lifting: noise as in PickExpert's lift phase
        elif at_cube and dz < 0.008:
            a = _toward(env, cube + [0, 0, -0.005], 1)
        elif at_cube:
            a = _toward(env, cube + [0, 0, -0.005], -1)
        elif dz < 0.05:
            a = _toward(env, np.array([grip[0], grip[1], cube[2] + 0.08]), -1)
        else:
            a = _toward(env, cube + [0, 0, 0.08], -1)
        return self.perturb(a, not at_cube)


class CabinetExpert(_Expert):
    def reset(self):
        self.phase = "rise"

    def act(self, obs=None) -> np.ndarray:
        env, task = self.env, self.env.task
        hook = task.hook_pos(env)
        grip = env.grip_pos()
        if self.phase == "rise":  # clear the handle bar before moving over it
            a = _toward(env, np.array([grip[0], grip[1], hook[2] + 0.1]), 1)
            if grip[2] > hook[2] + 0.06:
                self.phase = "above"
        elif self.phase == "above":
            a = _toward(env, hook + [0, 0, 0.1], 1)
            if np.linalg.norm((grip - hook)[:2]) < 0.012 and abs(grip[2] - hook[2] - 0.1) < 0.03:
                self.phase = "descend"
        elif self.phase == "descend":
            a = _toward(env, hook + [0, 0, -0.02], 1)
            if grip[2] - hook[2] < 0.0:
                self.phase = "pull"
        else:
            a = _toward(env, hook + [-0.1, 0, -0.02], 1)
            a[0] = min(a[0], -0.5)
        return self.perturb(a, self.phase in ("rise", "above"))


class ReachExpert(_Expert):
    """Straight to the target with the gripper open (``noise`` perturbs every step)."""

    def act(self, obs=None) -> np.ndarray:
        a = _toward(self.env, self.env.task.target_pos(self.env), -1)
        return self.perturb(a, True)


def make_expert(env, noise: float = 0.0, rng: np.random.Generator | None = None, memoryless: bool = False,
                noise_all: bool = False):
    """The scripted expert of ``env``'s task (``env`` may be wrapped). ``memoryless``: where the task has one, the expert
    that reads the current state alone (``PickCorrector``), for labelling states another policy reached. ``noise_all``:
    noise on every step, not only while travelling (MetaWorld's experts perturb every step anyway)."""
    base = env.unwrapped
    if hasattr(base, "make_expert"):  # suites that bring their own scripted policies (MetaWorld)
        return base.make_expert(noise, rng)
    if isinstance(base.task, PickTask):
        return (PickCorrector if memoryless else PickExpert)(base, noise, rng, noise_all)
    if isinstance(base.task, CabinetTask):
        return CabinetExpert(base, noise, rng, noise_all)
    if isinstance(base.task, ReachTask):
        return ReachExpert(base, noise, rng, noise_all)
    raise ValueError(f"no scripted expert for task {type(base.task).__name__}")
