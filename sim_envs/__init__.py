"""MuJoCo manipulation suite (gymnasium): Franka and Kuka arms, pick, cabinet and reach tasks, pixels; and
CortexBench's MetaWorld tasks (``mw_*``, ``metaworld_env.py``) behind the same observation contract.

    import gymnasium as gym, toto_robot.sim_envs
    env = gym.make("TotoRobot/FrankaPick-v0", image_size=128)
    env = make_env("mw_hammer", image_size=256)          # needs metaworld (requirements/nodeps.txt)
"""
import os
import sys

from gymnasium.envs.registration import register, registry

from toto_robot.utils.config import ConfigError

# Headless machines (no X display): MuJoCo renders offscreen through EGL unless the user chose a
# backend (MUJOCO_GL=osmesa|glfw|egl). Must happen before the first ``import mujoco``.
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and "MUJOCO_GL" not in os.environ:
    os.environ["MUJOCO_GL"] = "egl"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

TASK_IDS = {
    "franka_pick": ("TotoRobot/FrankaPick-v0", "franka", "pick"),
    "franka_cabinet": ("TotoRobot/FrankaCabinet-v0", "franka", "cabinet"),
    "kuka_pick": ("TotoRobot/KukaPick-v0", "kuka", "pick"),
    "kuka_cabinet": ("TotoRobot/KukaCabinet-v0", "kuka", "cabinet"),
    "franka_reach": ("TotoRobot/FrankaReach-v0", "franka", "reach"),
    "kuka_reach": ("TotoRobot/KukaReach-v0", "kuka", "reach"),
}

for _key, (_id, _robot, _task) in TASK_IDS.items():
    if _id not in registry:
        register(id=_id, entry_point="toto_robot.sim_envs.base_env:ManipulationEnv", kwargs={"robot": _robot, "task": _task})

# CortexBench's MetaWorld tasks (metaworld is imported only when one is made)
METAWORLD_TASK_IDS = {
    "mw_assembly": "TotoRobot/MetaWorld-Assembly-v3",
    "mw_bin_picking": "TotoRobot/MetaWorld-BinPicking-v3",
    "mw_button_press_topdown": "TotoRobot/MetaWorld-ButtonPressTopdown-v3",
    "mw_drawer_open": "TotoRobot/MetaWorld-DrawerOpen-v3",
    "mw_hammer": "TotoRobot/MetaWorld-Hammer-v3",
}
for _key, _id in METAWORLD_TASK_IDS.items():
    if _id not in registry:
        register(id=_id, entry_point="toto_robot.sim_envs.metaworld_env:MetaWorldEnv", kwargs={"task": _key})
ALL_TASKS = sorted([*TASK_IDS, *METAWORLD_TASK_IDS])


def make_env(task: str, **kwargs):
    """``make_env("franka_pick", image_size=64)`` -> the unwrapped-by-nothing gymnasium env (with TimeLimit);
    ``make_env("mw_drawer_open", image_size=256)``: a MetaWorld task (its own 500-step limit)."""
    import gymnasium as gym

    if task in METAWORLD_TASK_IDS:
        return gym.make(METAWORLD_TASK_IDS[task], disable_env_checker=True, **kwargs)
    if task not in TASK_IDS:
        raise ConfigError(f"unknown task {task!r}; known: {ALL_TASKS}")
    return gym.make(TASK_IDS[task][0], **kwargs)
