"""``toto_policy_node``: camera frames + robot state in, policy actions out.

    ros2 run toto_robot toto_policy_node --ros-args -p policy_dir:=runs/policy/bc/<run>/policy

Subscribes ``image_topic`` (sensor_msgs/Image) and ``state_topic`` (std_msgs/Float32MultiArray,
the proprioception vector the policy was trained with); on every frame, once a state has
arrived, publishes the action on ``action_topic`` (std_msgs/Float32MultiArray, in [-1, 1]) and
the encoder features on ``features_topic``.
"""
from __future__ import annotations

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray

from toto_robot.encoders.base import FrameFormatError
from toto_robot.policies import load_policy
from toto_robot.ros.convert import ImageEncodingError, array_to_multiarray, image_msg_to_array, multiarray_to_array
from toto_robot.ros_nodes.common import declare, spin

DEFAULTS = {
    "policy_dir": "",
    "image_topic": "camera/image_raw",
    "state_topic": "robot/state",
    "action_topic": "toto/action",
    "features_topic": "toto/features",
    "device": "cpu",
    "qos_depth": 2,
}


class PolicyNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("toto_policy", **node_kwargs)
        self.p = p = declare(self, DEFAULTS)
        if not p["policy_dir"]:
            raise ValueError("toto_policy_node needs the parameter policy_dir (a folder written by toto-robot train-policy)")
        self.policy = load_policy(p["policy_dir"], device=p["device"])
        self.state: np.ndarray | None = None
        self.action_pub = self.create_publisher(Float32MultiArray, p["action_topic"], p["qos_depth"])
        self.features_pub = self.create_publisher(Float32MultiArray, p["features_topic"], p["qos_depth"])
        self.create_subscription(Float32MultiArray, p["state_topic"], self.on_state, p["qos_depth"])
        self.create_subscription(Image, p["image_topic"], self.on_image, p["qos_depth"])
        self.actions = 0
        self.get_logger().info(f"policy {p['policy_dir']} ({self.policy.meta.get('task', '?')}): "
                               f"{p['image_topic']} + {p['state_topic']} -> {p['action_topic']}")

    def on_state(self, msg: Float32MultiArray) -> None:
        self.state = multiarray_to_array(msg)

    def on_image(self, msg: Image) -> None:
        if self.state is None:
            self.get_logger().warn(f"no state on {self.p['state_topic']} yet; waiting", throttle_duration_sec=5.0)
            return
        try:
            obs = {"image": image_msg_to_array(msg), "state": self.state}
            if hasattr(self.policy, "act_with_features"):
                action, feats = self.policy.act_with_features(obs)
            else:  # PPO: features stay inside SB3's extractor
                action, feats = self.policy.act(obs), None
        except (ImageEncodingError, FrameFormatError) as e:
            self.get_logger().error(f"dropping frame: {e}", throttle_duration_sec=5.0)
            return
        self.action_pub.publish(array_to_multiarray(action))
        self.actions += 1
        if feats is not None:
            self.features_pub.publish(array_to_multiarray(feats))


def main(args=None):
    spin(PolicyNode, args)


if __name__ == "__main__":
    main()
