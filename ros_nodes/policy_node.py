"""``toto_policy_node``: camera frames + robot state in, policy actions out, behind a safety gate.

    ros2 run toto_robot toto_policy_node --ros-args -p policy_dir:=runs/policy/bc/<run>/policy
    ros2 service call /toto_policy/enable std_srvs/srv/SetBool "{data: false}"    # stop output

Subscribes ``image_topic`` (sensor_msgs/Image, sensor-data QoS) and ``state_topic``
(std_msgs/Float32MultiArray, or sensor_msgs/JointState with ``state_msg_type:=joint_state``; the
proprioception vector the policy was trained with). At ``rate_hz`` it acts on the newest frame and
publishes the action on ``action_topic`` (std_msgs/Float32MultiArray: end-effector delta xyz and
gripper, each in [-1, 1]) and the encoder features on ``features_topic``.

Safety gate: nothing is published while disabled (parameter ``enabled`` or the ``~/enable``
service), when the newest frame is older than ``stale_timeout_s`` (camera stopped), or before a
state has arrived; the motion part of each action is scaled down to norm ``max_action_norm``.
"""
from __future__ import annotations

import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray
from std_srvs.srv import SetBool

from toto_robot.encoders.base import FrameFormatError
from toto_robot.policies import load_policy
from toto_robot.ros.convert import ImageEncodingError, array_to_multiarray, image_msg_to_array
from toto_robot.ros_nodes.common import StateSubscriber, declare, sensor_qos, spin, state_msg_class

DEFAULTS = {
    "policy_dir": "",
    "image_topic": "camera/image_raw",
    "state_topic": "robot/state",
    "state_msg_type": "array",  # array | joint_state
    "action_topic": "toto/action",
    "features_topic": "toto/features",
    "rate_hz": 10.0,
    "stale_timeout_s": 0.5,
    "max_action_norm": 1.0,  # L2 bound on the motion part (all but the gripper)
    "enabled": True,
    "device": "cpu",
}


def gate_action(action: np.ndarray, max_norm: float) -> np.ndarray:
    a = np.clip(np.asarray(action, np.float32), -1, 1)
    motion = a[:-1]
    n = float(np.linalg.norm(motion))
    if n > max_norm > 0:
        a[:-1] = motion * (max_norm / n)
    return a


class PolicyNode(StateSubscriber, Node):
    def __init__(self, **node_kwargs):
        super().__init__("toto_policy", **node_kwargs)
        self.p = p = declare(self, DEFAULTS)
        if not p["policy_dir"]:
            raise ValueError("toto_policy_node needs the parameter policy_dir (a folder written by toto-robot train-policy)")
        self.policy = load_policy(p["policy_dir"], device=p["device"])
        self.enabled = bool(p["enabled"])
        self.state: np.ndarray | None = None
        self.image: np.ndarray | None = None
        self.image_time = -np.inf
        self.stale = False
        self.actions = 0
        self.action_pub = self.create_publisher(Float32MultiArray, p["action_topic"], 10)
        self.features_pub = self.create_publisher(Float32MultiArray, p["features_topic"], 10)
        self.create_subscription(state_msg_class(p["state_msg_type"]), p["state_topic"], self.on_state, 10)
        self.create_subscription(Image, p["image_topic"], self.on_image, sensor_qos())
        self.create_service(SetBool, "~/enable", self.on_enable)
        self.create_timer(1.0 / p["rate_hz"], self.tick)
        self.get_logger().info(f"policy {p['policy_dir']} ({self.policy.meta.get('task', '?')}): "
                               f"{p['image_topic']} + {p['state_topic']} -> {p['action_topic']} at {p['rate_hz']} Hz")

    def on_image(self, msg: Image) -> None:
        try:
            self.image = image_msg_to_array(msg)
            self.image_time = time.monotonic()
        except ImageEncodingError as e:
            self.get_logger().error(f"dropping frame: {e}", throttle_duration_sec=5.0)

    def on_enable(self, request, response):
        self.enabled = bool(request.data)
        self.policy.reset()  # a chunking policy must not resume with actions planned before a stop
        response.success, response.message = True, f"policy output {'enabled' if self.enabled else 'disabled'}"
        self.get_logger().info(response.message)
        return response

    def tick(self) -> None:
        if not self.enabled or self.image is None:
            return
        if time.monotonic() - self.image_time > self.p["stale_timeout_s"]:
            if not self.stale:
                self.get_logger().warn(f"no frame for {self.p['stale_timeout_s']} s on {self.p['image_topic']}: output stopped")
                self.policy.reset()
            self.stale = True
            return
        self.stale = False
        if self.state is None:
            self.get_logger().warn(f"no state on {self.p['state_topic']} yet; waiting", throttle_duration_sec=5.0)
            return
        obs = {"image": self.image, "state": self.state}
        try:
            if hasattr(self.policy, "act_with_features"):
                action, feats = self.policy.act_with_features(obs)
            else:  # PPO: features stay inside SB3's extractor
                action, feats = self.policy.act(obs), None
        except FrameFormatError as e:
            self.get_logger().error(f"cannot act: {e}", throttle_duration_sec=5.0)
            return
        self.action_pub.publish(array_to_multiarray(gate_action(action, self.p["max_action_norm"])))
        self.actions += 1
        if feats is not None:
            self.features_pub.publish(array_to_multiarray(feats))


def main(args=None):
    spin(PolicyNode, args)


if __name__ == "__main__":
    main()
