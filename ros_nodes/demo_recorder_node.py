"""``toto_demo_recorder``: record (image, state, action) episodes from topics into the demo format.

    ros2 run toto_robot toto_demo_recorder --ros-args -p output_dir:=demos/real_pick -p task:=real_pick
    ros2 service call /toto_demo_recorder/start std_srvs/srv/Trigger
    ros2 service call /toto_demo_recorder/stop std_srvs/srv/SetBool "{data: true}"   # data = success

Each camera frame becomes one step: the frame, the latest state, and the action commanded
before the next frame (teleoperation or an expert). The state is read as the policy node reads it
(``state_msg_type``: a Float32MultiArray, or JointState by ``joint_names`` + PoseStamped xyz), and
the action from the commands a robot takes (``action_msg_type``): ``array`` (the normalised
Float32MultiArray on ``action_topic``), ``twist`` (geometry_msgs/TwistStamped on ``twist_topic``
divided by ``max_linear_speed`` (and ``max_angular_speed`` with ``twist_angular``) plus the gripper
command on ``gripper_topic``), or ``joint_trajectory`` (the first point's velocities divided by
``max_joint_speed`` plus the gripper). Set the same speeds as the policy node will use, and a policy
trained on the recording drives the robot at the speeds the demonstrations had. ``stop``
writes the episode atomically (one ``.npz``), so a crash loses at most the episode in progress.
With ``episode_done_topic`` set (std_msgs/Bool, data = success), episodes end and the next one
starts on that signal: the simulator bridge publishes it.
Behaviour cloning reads the folder as it reads simulator demonstrations:
``toto-robot train-policy policy=bc demos=<output_dir>``.
"""
from __future__ import annotations

import numpy as np
import torch
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float32MultiArray, Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from toto_robot.data.demos import DemoMeta, DemoWriter
from toto_robot.encoders.base import resize_frames_u8
from toto_robot.ros import control
from toto_robot.ros.convert import ImageEncodingError, image_msg_to_array, multiarray_to_array
from toto_robot.ros_nodes.common import ConfigError, Proprioception, declare, spin

DEFAULTS = {
    "output_dir": "",
    "task": "ros_task",
    "image_topic": "camera/image_raw",
    "state_topic": "robot/state",
    "state_msg_type": "array",  # array (std_msgs/Float32MultiArray) | joint_state (sensor_msgs/JointState + joint_names)
    "joint_names": [],
    "gripper_joint_names": [],
    "pose_topic": "",
    "action_msg_type": "array",  # array | twist | joint_trajectory
    "action_topic": "toto/action",
    "twist_topic": "toto/cmd_twist",
    "twist_angular": False,  # record the angular rates too ([vx, vy, vz, wx, wy, wz, gripper])
    "gripper_topic": "toto/gripper_cmd",
    "trajectory_topic": "toto/joint_trajectory",
    "max_linear_speed": 0.1,
    "max_angular_speed": 0.5,
    "max_joint_speed": 0.5,
    "gripper_open_position": 0.04,
    "gripper_closed_position": 0.0,
    "episode_done_topic": "",  # e.g. sim/episode_done: auto start/stop
    "image_size": 0,  # > 0: centre-crop and resize frames to this square size before storing
    "fps": 10.0,
    "action_space": "",  # what the action vector means; "" = ee_delta for array/twist, joint_delta for joint_trajectory
    "autostart": False,
    "qos_depth": 10,
}


class DemoRecorderNode(Node):
    NODE_NAME = "toto_demo_recorder"

    def __init__(self, **node_kwargs):
        super().__init__(self.NODE_NAME, **node_kwargs)
        self.p = p = declare(self, DEFAULTS)
        if not p["output_dir"]:
            raise ConfigError("toto_demo_recorder needs the parameter output_dir")
        kind = p["action_msg_type"]
        if kind not in ("array", "twist", "joint_trajectory"):
            raise ConfigError(f"action_msg_type must be array, twist or joint_trajectory, got {kind!r}")
        if kind == "joint_trajectory" and not p["joint_names"]:
            raise ConfigError("action_msg_type:=joint_trajectory needs joint_names (the order of the recorded joint rates)")
        if p["gripper_open_position"] == p["gripper_closed_position"]:
            raise ConfigError("gripper_open_position and gripper_closed_position are equal")
        self.action_space = p["action_space"] or ("joint_delta" if kind == "joint_trajectory" else "ee_delta")
        self.writer: DemoWriter | None = None
        self.action: np.ndarray | None = None
        self.motion: np.ndarray | None = None  # typed commands: the motion part and the gripper arrive apart
        self.gripper: float | None = None
        self.recording = bool(p["autostart"])
        self.steps: list[dict] = []
        self.pending: dict | None = None
        self.episodes_written = 0
        # commands and state before the frames: when a command and the next frame are ready together, the
        # executor serves subscriptions in creation order, so the command is paired with the frame it was made for
        if kind == "array":
            self.create_subscription(Float32MultiArray, p["action_topic"], lambda m: setattr(self, "action", multiarray_to_array(m)), p["qos_depth"])
        else:
            from geometry_msgs.msg import TwistStamped
            from trajectory_msgs.msg import JointTrajectory

            self.create_subscription(Float64MultiArray, p["gripper_topic"], self.on_gripper, p["qos_depth"])
            if kind == "twist":
                self.create_subscription(TwistStamped, p["twist_topic"], self.on_twist, p["qos_depth"])
            else:
                self.create_subscription(JointTrajectory, p["trajectory_topic"], self.on_trajectory, p["qos_depth"])
        if p["episode_done_topic"]:
            self.create_subscription(Bool, p["episode_done_topic"], self.on_episode_done, p["qos_depth"])
        self.proprio = Proprioception(self, p, qos_depth=p["qos_depth"])
        self.create_subscription(Image, p["image_topic"], self.on_image, p["qos_depth"])
        self.create_service(Trigger, "~/start", self.on_start)
        self.create_service(SetBool, "~/stop", self.on_stop)
        self.get_logger().info(f"recording to {p['output_dir']} ({'recording' if self.recording else 'call ~/start'})")

    @property
    def state(self) -> np.ndarray | None:
        return self.proprio.vector

    # ---- commands ----
    def _typed(self, convert, msg, what: str) -> None:
        try:
            convert(msg)
        except control.ControlError as e:
            self.get_logger().error(f"dropping {what}: {e}", throttle_duration_sec=5.0)
            return
        if self.motion is not None and self.gripper is not None:
            self.action = np.append(self.motion, np.float32(self.gripper)).astype(np.float32)

    def on_twist(self, msg) -> None:
        p = self.p
        self._typed(lambda m: setattr(self, "motion", control.action_from_twist(m, p["max_linear_speed"], p["max_angular_speed"],
                                                                                p["twist_angular"])), msg, "twist")

    def on_trajectory(self, msg) -> None:
        self._typed(lambda m: setattr(self, "motion", control.action_from_joint_trajectory(m, self.p["joint_names"], self.p["max_joint_speed"])),
                    msg, "joint trajectory")

    def on_gripper(self, msg) -> None:
        p = self.p
        self._typed(lambda m: setattr(self, "gripper", control.gripper_from_msg(m, p["gripper_open_position"], p["gripper_closed_position"])),
                    msg, "gripper command")

    # ---- data ----
    def on_image(self, msg: Image) -> None:
        if not self.recording:
            return
        try:
            img = image_msg_to_array(msg)
        except ImageEncodingError as e:
            self.get_logger().error(f"dropping frame: {e}", throttle_duration_sec=5.0)
            return
        if self.p["image_size"] > 0:
            img = resize_frames_u8(torch.from_numpy(img)[None], self.p["image_size"])[0].numpy()
        self._close_pending()
        if self.state is None:
            self.get_logger().warning(f"no state on {self.p['state_topic']} yet; frame skipped", throttle_duration_sec=5.0)
            return
        self.pending = {"image": img, "state": self.state.copy()}

    def _close_pending(self) -> None:
        """The pending frame's action is the last command issued before the next frame (or the stop)."""
        if self.pending is not None and self.action is not None:
            self.steps.append({**self.pending, "action": self.action.copy()})
        self.pending = None

    # ---- episodes ----
    def on_start(self, request, response):
        self.steps, self.pending, self.recording = [], None, True
        response.success, response.message = True, f"recording episode {self.episodes_written}"
        return response

    def on_stop(self, request, response):
        path = self.end_episode(bool(request.data))
        response.success = path is not None
        response.message = f"wrote {path}" if path else "no steps recorded; nothing written"
        return response

    def on_episode_done(self, msg: Bool) -> None:
        if self.recording:
            self.end_episode(bool(msg.data))
            self.steps, self.pending, self.recording = [], None, True  # the next episode starts at once

    def end_episode(self, success: bool):
        self._close_pending()
        self.recording = False
        steps, self.steps = self.steps, []
        if not steps:
            return None
        image = np.stack([s["image"] for s in steps])
        state = np.stack([s["state"] for s in steps])
        action = np.stack([s["action"] for s in steps])
        if self.writer is None:
            meta = DemoMeta(source="ros", task=self.p["task"], image_size=tuple(image.shape[1:3]), state_dim=state.shape[1],
                            action_dim=action.shape[1], fps=float(self.p["fps"]), action_space=self.action_space)
            self.writer = DemoWriter(self.p["output_dir"], meta)
        path = self.writer.write_episode(image, state, action, success=success)
        self.episodes_written += 1
        self.get_logger().info(f"episode {self.episodes_written}: {len(steps)} steps, success={success} -> {path}")
        return path

    def close(self) -> None:
        if self.recording and (self.steps or self.pending):
            self.end_episode(False)


def main(args=None):
    spin(DemoRecorderNode, args)


if __name__ == "__main__":
    main()
