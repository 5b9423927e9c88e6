"""``toto_sim_camera``: a MuJoCo task as a ROS robot: publishes camera frames and proprioception,
executes the commands it receives (or its scripted expert's), and signals episode ends.

    ros2 run toto_robot toto_sim_camera --ros-args -p task:=franka_cabinet -p mode:=expert     # demonstrations
    ros2 run toto_robot toto_sim_camera --ros-args -p task:=franka_cabinet -p mode:=external   # closed loop with a policy

Publishes, all stamped alike for one observation: ``state_topic`` (std_msgs/Float32MultiArray, the
env's 19-d state), ``joint_state_topic`` (sensor_msgs/JointState of the arm and finger joints),
``pose_topic`` (geometry_msgs/PoseStamped of the grip site in ``frame_id``), then ``image_topic``
(sensor_msgs/Image rgb8); ``episode_done_topic`` (std_msgs/Bool, data = success) at episode ends.

Commands (``action_msg_type``): ``array`` = the normalised action on ``action_topic``
(std_msgs/Float32MultiArray); ``twist`` = geometry_msgs/TwistStamped on ``twist_topic`` plus the
gripper on ``gripper_topic`` (std_msgs/Float64MultiArray [position]). A twist is converted with the
env's own scale: full speed = ``max_delta`` / control period (0.6 m/s for the sim suite), so a policy
node with ``max_linear_speed:=0.6`` reproduces its normalised actions.

``expert`` mode publishes the expert's action in that form too (what the demo recorder stores).
``external`` mode with ``lockstep`` (default) steps once per command made for the last frame (a
twist stamped with that frame's stamp, or any array action received after it) and re-sends the frame,
same stamp, every tick until then: a closed loop that does what an offline rollout does, step for
step. Without lockstep it steps at ``rate_hz`` with the latest command, holding still until one arrives.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float32MultiArray, Float64MultiArray

from toto_robot.ros import control
from toto_robot.ros.convert import array_to_image_msg, array_to_multiarray, multiarray_to_array
from toto_robot.ros_nodes.common import ConfigError, declare, spin

DEFAULTS = {
    "task": "franka_cabinet",
    "image_size": 64,
    "rate_hz": 10.0,
    "mode": "expert",  # expert | external
    "action_msg_type": "array",  # array | twist
    "lockstep": True,  # external mode: one step per command for the last frame
    "expert_noise": 0.1,
    "seed": 0,
    "max_episodes": 0,  # 0 = run forever
    "max_steps": 0,  # episode length limit; 0 = the task's own
    "image_topic": "camera/image_raw",
    "camera": "agentview",  # the view published on image_topic
    "extra_cameras": [],  # more views (e.g. [wrist]), each published on camera/<name>/image_raw just before image_topic's frame
    "state_topic": "robot/state",
    "joint_state_topic": "joint_states",
    "pose_topic": "toto/ee_pose",
    "frame_id": "base_link",
    "action_topic": "toto/action",
    "twist_topic": "toto/cmd_twist",
    "gripper_topic": "toto/gripper_cmd",
    "gripper_open_position": 0.04,  # the sim fingers' opening at action -1
    "gripper_closed_position": 0.0,
    "episode_done_topic": "sim/episode_done",
}


class SimCameraNode(Node):
    NODE_NAME = "toto_sim_camera"

    def __init__(self, **node_kwargs):
        super().__init__(self.NODE_NAME, **node_kwargs)
        self.p = p = declare(self, DEFAULTS)
        if p["mode"] not in ("expert", "external"):
            raise ConfigError(f"mode must be 'expert' or 'external', got {p['mode']!r}")
        if p["action_msg_type"] not in ("array", "twist"):
            raise ConfigError(f"action_msg_type must be 'array' or 'twist', got {p['action_msg_type']!r}")
        from toto_robot.sim_envs import make_env
        from toto_robot.sim_envs.base_env import CONTROL_DT

        try:
            self.env = make_env(p["task"], image_size=p["image_size"], camera=p["camera"], extra_cameras=p["extra_cameras"],
                                **({"max_steps": p["max_steps"]} if p["max_steps"] > 0 else {}))
        except ValueError as e:
            raise ConfigError(str(e)) from e
        u = self.env.unwrapped
        if u.control != "ee_delta":
            raise ConfigError(f"the bridge drives ee_delta tasks; {p['task']} uses {u.control}")
        self.full_speed = u.max_delta / CONTROL_DT  # m/s at action 1
        m = u.model
        fingers = [i for i in range(m.njnt) if m.jnt_qposadr[i] in set(u.finger_qadr.tolist())]
        self.joint_ids = list(u.arm_joints) + fingers
        self.joint_names = [m.joint(int(i)).name for i in self.joint_ids]
        self.qadr, self.dadr = m.jnt_qposadr[self.joint_ids], m.jnt_dofadr[self.joint_ids]

        self.image_pub = self.create_publisher(Image, p["image_topic"], 10)
        self.extra_pubs = {f"{name}_image": self.create_publisher(Image, f"camera/{name}/image_raw", 10) for name in p["extra_cameras"]}
        self.state_pub = self.create_publisher(Float32MultiArray, p["state_topic"], 10)
        self.joint_pub = self.create_publisher(JointState, p["joint_state_topic"], 10)
        self.pose_pub = self.create_publisher(PoseStamped, p["pose_topic"], 10)
        self.done_pub = self.create_publisher(Bool, p["episode_done_topic"], 10)
        twist = p["action_msg_type"] == "twist"
        if p["mode"] == "expert":
            self.action_pub = self.create_publisher(Float32MultiArray, p["action_topic"], 10)
            self.twist_pub = self.create_publisher(TwistStamped, p["twist_topic"], 10) if twist else None
            self.gripper_pub = self.create_publisher(Float64MultiArray, p["gripper_topic"], 10) if twist else None
        elif twist:
            self.create_subscription(Float64MultiArray, p["gripper_topic"], self.on_gripper, 10)
            self.create_subscription(TwistStamped, p["twist_topic"], self.on_twist, 10)
        else:
            self.create_subscription(Float32MultiArray, p["action_topic"], self.on_action, 10)
        self.action: np.ndarray | None = None  # the command to execute next (external mode)
        self.gripper: float | None = None
        self.gripper_fresh = False
        self.pending_motion: np.ndarray | None = None
        self.commands = self.refused = self.clipped = self.other_frame = 0
        self.episode, self.successes, self.steps = 0, 0, 0
        self.frame_stamp = None
        self._reset()
        self.timer = self.create_timer(1.0 / p["rate_hz"], self.tick)
        self.get_logger().info(f"{p['task']} ({p['mode']}, {p['action_msg_type']} commands"
                               f"{', lockstep' if p['mode'] == 'external' and p['lockstep'] else ''}); "
                               f"full speed {self.full_speed:.2f} m/s; joints {', '.join(self.joint_names)}")

    def _reset(self) -> None:
        from toto_robot.sim_envs.experts import make_expert

        self.obs, _ = self.env.reset(seed=self.p["seed"] + self.episode)
        self.expert = make_expert(self.env, self.p["expert_noise"], np.random.default_rng(self.p["seed"] + self.episode))
        self.action, self.pending_motion, self.gripper_fresh = None, None, False
        self._publish_obs(new=True)

    def _publish_obs(self, new: bool) -> None:
        """State messages first (subscribers pair a frame with the latest state), then the frame. The header-less
        array state goes out before the stamp is taken, so its log time is never after the frame's stamp; the
        JointState, the pose and the frame share that stamp."""
        self.state_pub.publish(array_to_multiarray(self.obs["state"]))
        if new or self.frame_stamp is None:
            self.frame_stamp = self.get_clock().now().to_msg()
        stamp, d, u = self.frame_stamp, self.env.unwrapped.data, self.env.unwrapped
        js = JointState(name=self.joint_names, position=d.qpos[self.qadr].tolist(), velocity=d.qvel[self.dadr].tolist())
        js.header.stamp = stamp
        self.joint_pub.publish(js)
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, self.p["frame_id"]
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in u.grip_pos())
        q = np.empty(4)
        import mujoco

        mujoco.mju_mat2Quat(q, d.site_xmat[u.site])
        pose.pose.orientation.w, pose.pose.orientation.x, pose.pose.orientation.y, pose.pose.orientation.z = (float(v) for v in q)
        self.pose_pub.publish(pose)
        for key, pub in self.extra_pubs.items():  # the other views first: a subscriber acting on image_topic's frame has them
            pub.publish(array_to_image_msg(self.obs[key], stamp=stamp))
        self.image_pub.publish(array_to_image_msg(self.obs["image"], stamp=stamp))

    # ---- commands ----
    def _accept(self, a: np.ndarray) -> None:
        """A command to execute: at once in lockstep, else kept for the timer's steps."""
        if a.shape != self.env.action_space.shape or not np.all(np.isfinite(a)):
            self.refused += 1
            self.get_logger().error(f"refusing action {a}: expected {self.env.action_space.shape} finite values", throttle_duration_sec=5.0)
            return
        self.commands += 1
        if self.p["lockstep"]:
            self._step(a)
        else:
            self.action = a

    def on_action(self, msg: Float32MultiArray) -> None:
        self._accept(multiarray_to_array(msg))

    def on_gripper(self, msg: Float64MultiArray) -> None:
        try:
            self.gripper = control.gripper_from_msg(msg, self.p["gripper_open_position"], self.p["gripper_closed_position"])
            self.gripper_fresh = True
        except control.ControlError as e:
            self.refused += 1
            self.get_logger().error(f"refusing gripper command: {e}", throttle_duration_sec=5.0)
            return
        self._combine()  # the twist of this step may have come first

    def on_twist(self, msg: TwistStamped) -> None:
        if self.p["lockstep"] and (self.frame_stamp is None or control.stamp_ns(msg.header.stamp) != control.stamp_ns(self.frame_stamp)):
            self.other_frame += 1  # a second command for a frame already stepped, or one from a node reading another sim
            return  # made for another frame: not this step's command
        try:
            motion = control.action_from_twist(msg, self.full_speed, 1.0)
        except control.ControlError as e:
            self.refused += 1
            self.get_logger().error(f"refusing twist: {e}", throttle_duration_sec=5.0)
            return
        t = msg.twist
        if max(abs(t.linear.x), abs(t.linear.y), abs(t.linear.z)) > self.full_speed * (1 + 1e-6):
            self.clipped += 1
            self.get_logger().warning(f"twist faster than the sim's {self.full_speed:.2f} m/s: clipped", throttle_duration_sec=5.0)
        if abs(t.angular.x) + abs(t.angular.y) + abs(t.angular.z) > 0:
            self.get_logger().warning("the sim's end effector keeps its orientation: angular velocity ignored", throttle_duration_sec=5.0)
        self.pending_motion = motion
        self._combine()

    def _combine(self) -> None:
        motion = self.pending_motion
        if motion is None or self.gripper is None or (self.p["lockstep"] and not self.gripper_fresh):
            return
        self.pending_motion, self.gripper_fresh = None, False
        self._accept(np.append(motion, np.float32(self.gripper)).astype(np.float32))

    # ---- stepping ----
    def tick(self) -> None:
        if self.p["max_episodes"] and self.episode >= self.p["max_episodes"]:
            return
        if self.p["mode"] == "expert":
            action = self.expert.act(self.obs)
            self.action_pub.publish(array_to_multiarray(action))
            if self.twist_pub is not None:
                self.gripper_pub.publish(control.gripper_msg(float(action[-1]), self.p["gripper_open_position"], self.p["gripper_closed_position"]))
                self.twist_pub.publish(control.twist_from_action(action, self.full_speed, 1.0, self.p["frame_id"], self.frame_stamp))
            self._step(action)
        elif self.action is None or self.p["lockstep"]:
            self._publish_obs(new=False)  # no command for this frame yet: show it again, same stamp
        else:
            self._step(self.action)

    def _step(self, action: np.ndarray) -> None:
        if self.p["max_episodes"] and self.episode >= self.p["max_episodes"]:
            return
        self.obs, _, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if terminated or truncated:
            self.successes += bool(info["success"])
            self.done_pub.publish(Bool(data=bool(info["success"])))
            self.episode += 1
            self.get_logger().info(f"episode {self.episode}: success={info['success']} ({self.successes}/{self.episode})")
            if not (self.p["max_episodes"] and self.episode >= self.p["max_episodes"]):
                self._reset()
            return
        self._publish_obs(new=True)

    def close(self) -> None:
        self.env.close()


def main(args=None):
    spin(SimCameraNode, args)


if __name__ == "__main__":
    main()
