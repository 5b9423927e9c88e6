"""Typed robot messages <-> the normalised vectors policies read and write (no running graph needed).

Actions. A policy's action is ``[motion..., gripper]`` in [-1, 1] (``ee_delta``: motion = end-effector
velocity direction xyz, optionally followed by roll/pitch/yaw rates; ``joint_delta``: one entry per
arm joint). On a robot it becomes:

* ``geometry_msgs/TwistStamped``: linear = motion[:3] * ``max_linear_speed`` (m/s), angular =
  motion[3:6] * ``max_angular_speed`` (rad/s, zero for xyz-only policies), ``header.frame_id`` = the
  frame the velocity is expressed in (what MoveIt Servo reads);
* a gripper command, ``std_msgs/Float64MultiArray`` ``[position]``: -1 (open) .. +1 (closed) mapped
  linearly onto ``[open_position, closed_position]`` (what a ros2_control forward position
  controller takes);
* ``trajectory_msgs/JointTrajectory``: one point, ``dt`` ahead, at the current joint positions
  plus motion * ``max_joint_speed`` * dt, velocities motion * ``max_joint_speed``.

Proprioception. ``JointStateMapper`` merges ``sensor_msgs/JointState`` messages by joint name
(drivers may publish arm and gripper separately) into this project's state layout:
``[positions(joint_names), velocities(joint_names), positions(gripper_joint_names)]``, followed by
the end-effector position xyz of a ``geometry_msgs/PoseStamped`` when a pose topic is used. The
simulator's 19-d state is exactly that (7 + 7 + 2 + 3).
"""
from __future__ import annotations

import math

import numpy as np

from toto_robot.errors import UserError


class ControlError(UserError, ValueError):
    """A command or state that cannot be converted: wrong size, NaN/inf, missing joints."""


def _check_finite(x: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(x)):
        raise ControlError(f"{what} contains NaN/inf: {x}")
    return x


def _time_msg(seconds: float):
    from builtin_interfaces.msg import Duration

    sec = math.floor(seconds)
    return Duration(sec=int(sec), nanosec=int(round((seconds - sec) * 1e9)))


# ---- actions -> commands ----
def twist_from_action(action, max_linear_speed: float, max_angular_speed: float, frame_id: str, stamp=None):
    """``[vx, vy, vz, (wx, wy, wz,) gripper]`` in [-1, 1] -> geometry_msgs/TwistStamped in m/s and rad/s."""
    from geometry_msgs.msg import TwistStamped

    a = _check_finite(np.clip(np.asarray(action, np.float64).reshape(-1), -1, 1), "action")
    motion = a[:-1]
    if motion.size not in (3, 6):
        raise ControlError(f"a twist needs 3 (xyz) or 6 (xyz + rpy rates) motion entries before the gripper, got an action of {a.size}")
    msg = TwistStamped()
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    lin = motion[:3] * max_linear_speed
    ang = motion[3:6] * max_angular_speed if motion.size == 6 else np.zeros(3)
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in lin)
    msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (float(v) for v in ang)
    return msg


def gripper_position(g: float, open_position: float, closed_position: float) -> float:
    """-1 (open) .. +1 (closed) -> a gripper position between ``open_position`` and ``closed_position``."""
    g = float(np.clip(g, -1, 1))
    if not math.isfinite(g):
        raise ControlError(f"gripper command is {g}")
    return open_position + (g + 1) / 2 * (closed_position - open_position)


def gripper_msg(g: float, open_position: float, closed_position: float):
    from std_msgs.msg import Float64MultiArray

    return Float64MultiArray(data=[gripper_position(g, open_position, closed_position)])


def joint_trajectory_from_action(action, joint_names, positions, max_joint_speed: float, dt: float, stamp=None):
    """``[joint rates..., gripper]`` in [-1, 1] + current joint positions -> trajectory_msgs/JointTrajectory
    with one point ``dt`` seconds ahead."""
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    a = _check_finite(np.clip(np.asarray(action, np.float64).reshape(-1), -1, 1), "action")
    q = _check_finite(np.asarray(positions, np.float64).reshape(-1), "joint positions")
    if a.size - 1 != len(joint_names) or q.size != len(joint_names):
        raise ControlError(f"{len(joint_names)} joint names, but the action has {a.size - 1} joint entries and the state {q.size} positions")
    vel = a[:-1] * max_joint_speed
    msg = JointTrajectory(joint_names=list(joint_names))
    if stamp is not None:
        msg.header.stamp = stamp
    msg.points = [JointTrajectoryPoint(positions=(q + vel * dt).tolist(), velocities=vel.tolist(), time_from_start=_time_msg(dt))]
    return msg


# ---- commands -> actions (the recorder and the simulator bridge) ----
def action_from_twist(msg, max_linear_speed: float, max_angular_speed: float, angular: bool = False) -> np.ndarray:
    """geometry_msgs/TwistStamped -> the motion part ``[vx, vy, vz(, wx, wy, wz)]`` normalised to [-1, 1]."""
    t = msg.twist
    lin = np.array([t.linear.x, t.linear.y, t.linear.z]) / max_linear_speed
    parts = [lin]
    if angular:
        parts.append(np.array([t.angular.x, t.angular.y, t.angular.z]) / max_angular_speed)
    return np.clip(_check_finite(np.concatenate(parts), "twist"), -1, 1).astype(np.float32)


def gripper_from_msg(msg, open_position: float, closed_position: float) -> float:
    """std_msgs/Float64MultiArray ``[position, ...]`` -> -1 (open) .. +1 (closed)."""
    if len(msg.data) == 0:
        raise ControlError("empty gripper command")
    p = float(msg.data[0])
    if not math.isfinite(p):
        raise ControlError(f"gripper command is {p}")
    return float(np.clip(2 * (p - open_position) / (closed_position - open_position) - 1, -1, 1))


def action_from_joint_trajectory(msg, joint_names, max_joint_speed: float) -> np.ndarray:
    """trajectory_msgs/JointTrajectory -> the joint rates of its first point, in ``joint_names`` order, normalised."""
    if not msg.points:
        raise ControlError("joint trajectory has no points")
    index = {n: i for i, n in enumerate(msg.joint_names)}
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise ControlError(f"joint trajectory lacks joints {missing} (has {list(msg.joint_names)})")
    v = np.asarray(msg.points[0].velocities, np.float64)
    if v.size != len(msg.joint_names):
        raise ControlError(f"joint trajectory point has {v.size} velocities for {len(msg.joint_names)} joints")
    return np.clip(_check_finite(v[[index[n] for n in joint_names]] / max_joint_speed, "joint velocities"), -1, 1).astype(np.float32)


# ---- proprioception ----
def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class JointStateMapper:
    """Latest positions/velocities by joint name -> ``[q(joint_names), dq(joint_names), q(gripper_joint_names)]``.

    ``update`` merges one message (a subset of joints is fine); ``vector`` is None until every named
    joint has been seen. A message with NaN/inf for a named joint is refused whole."""

    def __init__(self, joint_names, gripper_joint_names=()):
        self.joint_names, self.gripper_joint_names = list(joint_names), list(gripper_joint_names)
        if not self.joint_names:
            raise ControlError("joint_names is empty: name the arm joints in the order the policy was trained with")
        dup = {n for n in self.joint_names + self.gripper_joint_names if (self.joint_names + self.gripper_joint_names).count(n) > 1}
        if dup:
            raise ControlError(f"joint names listed twice: {sorted(dup)}")
        self.position: dict[str, float] = {}
        self.velocity: dict[str, float] = {}
        self.stamp = -1  # ns of the newest message that carried a named joint

    @property
    def dim(self) -> int:
        return 2 * len(self.joint_names) + len(self.gripper_joint_names)

    def update(self, msg) -> bool:
        """Merge a sensor_msgs/JointState; returns whether it carried any named joint."""
        names = list(msg.name)
        pos, vel = np.asarray(msg.position, np.float64), np.asarray(msg.velocity, np.float64)
        if pos.size != len(names):
            raise ControlError(f"JointState has {len(names)} names but {pos.size} positions")
        if vel.size not in (0, len(names)):
            raise ControlError(f"JointState has {len(names)} names but {vel.size} velocities")
        wanted = set(self.joint_names) | set(self.gripper_joint_names)
        new_p, new_v = {}, {}
        for i, n in enumerate(names):
            if n not in wanted:
                continue
            new_p[n] = float(pos[i])
            if n in self.joint_names:
                if vel.size == 0:
                    raise ControlError(f"JointState carries no velocities, but the policy reads the velocity of {n!r}")
                new_v[n] = float(vel[i])
        _check_finite(np.array(list(new_p.values()) + list(new_v.values())), "JointState")
        if not new_p:
            return False
        self.position.update(new_p)
        self.velocity.update(new_v)
        self.stamp = max(self.stamp, stamp_ns(msg.header.stamp))
        return True

    def missing(self) -> list[str]:
        return [n for n in self.joint_names + self.gripper_joint_names if n not in self.position]

    def vector(self) -> np.ndarray | None:
        if self.missing():
            return None
        return np.array([self.position[n] for n in self.joint_names] + [self.velocity[n] for n in self.joint_names]
                        + [self.position[n] for n in self.gripper_joint_names], np.float32)


def pose_position(msg) -> np.ndarray:
    """geometry_msgs/PoseStamped -> its position xyz (float32 [3])."""
    p = msg.pose.position
    return _check_finite(np.array([p.x, p.y, p.z], np.float32), "pose")
