"""``toto_sim_camera``: a MuJoCo task as a ROS robot: publishes camera frames and proprioception,
applies the actions it receives (or its scripted expert's), and signals episode ends.

    ros2 run toto_robot toto_sim_camera --ros-args -p task:=franka_cabinet -p mode:=expert     # demonstrations
    ros2 run toto_robot toto_sim_camera --ros-args -p task:=franka_cabinet -p mode:=external   # closed loop with a policy

Publishes ``image_topic`` (sensor_msgs/Image rgb8), ``state_topic`` (std_msgs/Float32MultiArray),
``episode_done_topic`` (std_msgs/Bool, data = success). In ``expert`` mode it also publishes the
expert's action on ``action_topic`` (what the demo recorder stores); in ``external`` mode it
steps with the latest action received on ``action_topic``, holding still until one arrives.
"""
from __future__ import annotations

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float32MultiArray

from toto_robot.ros.convert import array_to_image_msg, array_to_multiarray, multiarray_to_array
from toto_robot.ros_nodes.common import declare, spin

DEFAULTS = {
    "task": "franka_cabinet",
    "image_size": 64,
    "rate_hz": 10.0,
    "mode": "expert",  # expert | external
    "expert_noise": 0.1,
    "seed": 0,
    "max_episodes": 0,  # 0 = run forever
    "image_topic": "camera/image_raw",
    "state_topic": "robot/state",
    "action_topic": "toto/action",
    "episode_done_topic": "sim/episode_done",
}


class SimCameraNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("toto_sim_camera", **node_kwargs)
        self.p = p = declare(self, DEFAULTS)
        if p["mode"] not in ("expert", "external"):
            raise ValueError(f"mode must be 'expert' or 'external', got {p['mode']!r}")
        from toto_robot.sim_envs import make_env

        self.env = make_env(p["task"], image_size=p["image_size"])
        self.image_pub = self.create_publisher(Image, p["image_topic"], 10)
        self.state_pub = self.create_publisher(Float32MultiArray, p["state_topic"], 10)
        self.done_pub = self.create_publisher(Bool, p["episode_done_topic"], 10)
        self.action_pub = self.create_publisher(Float32MultiArray, p["action_topic"], 10) if p["mode"] == "expert" else None
        if p["mode"] == "external":
            self.create_subscription(Float32MultiArray, p["action_topic"], self.on_action, 10)
        self.action: np.ndarray | None = None
        self.episode, self.successes = 0, 0
        self._reset()
        self.timer = self.create_timer(1.0 / p["rate_hz"], self.tick)

    def _reset(self) -> None:
        from toto_robot.sim_envs.experts import make_expert

        self.obs, _ = self.env.reset(seed=self.p["seed"] + self.episode)
        self.expert = make_expert(self.env, self.p["expert_noise"], np.random.default_rng(self.p["seed"] + self.episode))
        self.action = None
        self._publish_obs()

    def _publish_obs(self) -> None:
        self.state_pub.publish(array_to_multiarray(self.obs["state"]))  # state first: subscribers pair a frame with the latest state
        self.image_pub.publish(array_to_image_msg(self.obs["image"], stamp=self.get_clock().now().to_msg()))

    def on_action(self, msg: Float32MultiArray) -> None:
        a = multiarray_to_array(msg)
        if a.shape != self.env.action_space.shape:
            self.get_logger().error(f"action of shape {a.shape}, expected {self.env.action_space.shape}", throttle_duration_sec=5.0)
            return
        self.action = a

    def tick(self) -> None:
        if self.p["max_episodes"] and self.episode >= self.p["max_episodes"]:
            return
        if self.p["mode"] == "expert":
            action = self.expert.act(self.obs)
            self.action_pub.publish(array_to_multiarray(action))
        elif self.action is None:
            self._publish_obs()  # no command yet: show the scene again
            return
        else:
            action = self.action
        self.obs, _, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            self.successes += bool(info["success"])
            self.done_pub.publish(Bool(data=bool(info["success"])))
            self.episode += 1
            self.get_logger().info(f"episode {self.episode}: success={info['success']} ({self.successes}/{self.episode})")
            if not (self.p["max_episodes"] and self.episode >= self.p["max_episodes"]):
                self._reset()
            return
        self._publish_obs()

    def close(self) -> None:
        self.env.close()


def main(args=None):
    spin(SimCameraNode, args)


if __name__ == "__main__":
    main()
