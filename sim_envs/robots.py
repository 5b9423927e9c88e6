"""Robots as data (robosuite style): a small spec per arm, no subclass per robot.

Models come from MJCF files installed on disk, never from the network: the robot and gripper
descriptions shipped inside the robosuite wheel (installed ``--no-deps``; its Python code is not
imported). The arms' torque motors are replaced by joint position servos with gravity
compensation, so the env's end-effector controller commands joint targets.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from toto_robot.errors import UserError


class AssetError(UserError, FileNotFoundError):
    """Robot model files are not installed."""


def asset_root() -> Path:
    spec = importlib.util.find_spec("robosuite")
    if spec is None or not spec.submodule_search_locations:
        raise AssetError("robot models not found: install them with `pip install --no-deps robosuite==1.5.2` (make install does)")
    root = Path(spec.submodule_search_locations[0]) / "models" / "assets"
    if not (root / "robots").is_dir():
        raise AssetError(f"robot models missing under {root}")
    return root


@dataclass(frozen=True)
class RobotSpec:
    name: str
    xml: str  # relative to the asset root
    joints: tuple[str, ...]
    home: tuple[float, ...]
    kp: tuple[float, ...]
    gripper_xml: str = "grippers/panda_gripper.xml"
    hand_body: str = "right_hand"


FRANKA = RobotSpec(
    name="franka",
    xml="robots/panda/robot.xml",
    joints=tuple(f"joint{i}" for i in range(1, 8)),
    home=(0.0, 0.35, 0.0, -2.2, 0.0, 2.55, 0.785),
    kp=(800, 800, 600, 600, 300, 200, 100),
)
KUKA = RobotSpec(
    name="kuka",
    xml="robots/iiwa/robot.xml",
    joints=tuple(f"joint_{i}" for i in range(1, 8)),
    home=(0.0, 0.6, 0.0, -1.55, 0.0, 1.0, 0.0),
    kp=(1200, 1200, 800, 800, 400, 300, 150),
)
ROBOTS = {"franka": FRANKA, "kuka": KUKA}
PREFIX = "robot_"
GRIPPER_PREFIX = "gripper_"


def build_robot_spec(robot: RobotSpec) -> mujoco.MjSpec:
    """The arm with the parallel gripper attached at its hand, position servos, gravity compensation."""
    root = asset_root()
    arm = mujoco.MjSpec.from_file(str(root / robot.xml))
    gripper = mujoco.MjSpec.from_file(str(root / robot.gripper_xml))
    for act in list(arm.actuators):
        arm.delete(act)
    for b in arm.bodies:
        b.gravcomp = 1.0
    for b in gripper.bodies:
        b.gravcomp = 1.0
    arm.body(robot.hand_body).add_frame().attach_body(gripper.body("right_gripper"), GRIPPER_PREFIX, "")
    for j, kp in zip(robot.joints, robot.kp):
        joint = arm.joint(j)
        joint.damping = np.maximum(joint.damping, np.sqrt(kp))  # near-critical damping of the servo
        joint.armature = float(np.maximum(joint.armature, 0.1))
        act = arm.add_actuator()
        act.name = f"servo_{j}"
        act.target = j
        act.trntype = mujoco.mjtTrn.mjTRN_JOINT
        act.gainprm[0] = kp
        act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        act.biasprm[1] = -kp
        act.ctrlrange = joint.range
        act.ctrllimited = True
    return arm
