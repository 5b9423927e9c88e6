"""``toto_policy_node``: camera frames + robot state in, typed robot commands out, behind a safety gate.

    ros2 run toto_robot toto_policy_node --ros-args -p policy_dir:=runs/policy/bc/<run>/policy \\
        -p state_msg_type:=joint_state -p "joint_names:=[fr3_joint1, ..., fr3_joint7]" \\
        -p "gripper_joint_names:=[fr3_finger_joint1, fr3_finger_joint2]" -p pose_topic:=/ee_pose \\
        -p output:=twist -p frame_id:=fr3_link0 -p max_linear_speed:=0.1 -r toto/cmd_twist:=/servo_node/delta_twist_cmds
    ros2 service call /toto_policy/enable std_srvs/srv/SetBool "{data: false}"    # stop output

Inputs: ``image_topic`` (sensor_msgs/Image, or CompressedImage with ``compressed:=true``) and the
proprioception the policy was trained with: ``state_msg_type:=joint_state`` reads
sensor_msgs/JointState on ``state_topic`` mapped by ``joint_names`` / ``gripper_joint_names`` (see
``toto_robot.ros.control``), plus the xyz of a geometry_msgs/PoseStamped on ``pose_topic`` when set;
``state_msg_type:=array`` reads the whole vector as std_msgs/Float32MultiArray.

Output (``output``): ``twist`` -> geometry_msgs/TwistStamped on ``twist_topic`` (m/s and rad/s:
the action scaled by ``max_linear_speed`` / ``max_angular_speed``, ``frame_id``) and the gripper on
``gripper_topic`` (std_msgs/Float64MultiArray [position] between ``gripper_open_position`` and
``gripper_closed_position``); ``joint_trajectory`` -> trajectory_msgs/JointTrajectory on
``trajectory_topic`` (a joint-space policy; ``max_joint_speed``) and the gripper; ``array`` -> the
normalised action as std_msgs/Float32MultiArray on ``action_topic`` (the simulator bridge's input).
Commands are stamped ``now`` or, with ``command_stamp:=frame``, with the stamp of the frame they
were computed from (the simulator bridge pairs them with its frames that way).

Several cameras: a policy trained on more views than ``image`` (``policy.cameras``, e.g. [image, wrist_image])
reads its first camera on ``image_topic`` and the others on ``camera_topics``, in the policy's order. Each
command pairs the newest ``image_topic`` frame with, from each other camera, the buffered frame whose header
stamp is closest to it (arrival time for unstamped frames), when within ``camera_sync_tolerance_s`` (an
approximate-time pairing). Acting once per frame, a frame waits until every other camera has sent a frame
with its stamp or a newer one (the closest cannot change after that); when no pairing has been possible for
``stale_timeout_s`` the node holds commands as for a stopped camera, and names the missing one.

Timing: at ``rate_hz`` on the newest frame, or with ``rate_hz:=0`` once per new frame, as soon as a
stamped state at least as new as the frame has arrived.

Safety gate: nothing is published while disabled (parameter ``enabled`` or the ``~/enable``
service), when the newest frame is older than ``stale_timeout_s`` (camera stopped), or before a
state has arrived; the motion part of each action is scaled down to norm ``max_action_norm``.
Errors while acting are logged with their traceback and counted, and the node goes on; rate,
latency and drops are published on ``/diagnostics``.

Out-of-distribution monitor (``toto_robot.policies.ood``), when the policy folder holds a reference
(``ood.safetensors``, written by train-policy): every frame's score goes out as std_msgs/Float32 on
``ood_topic`` and its moving average on ``ood_average_topic``; ``/diagnostics`` carries a second status
(``<node>: ood``) at WARN / ERROR when the average passes the reference's calibrated thresholds. With
``ood_gate:=true`` no command is published while the average stays above the ERROR threshold (the
policy is reset, as when the camera stops); the node logs when it holds and when it resumes. A
policy saved without a reference runs as before, with the monitor off and a log line saying so.
"""
from __future__ import annotations

import time
import traceback
from collections import deque
from functools import partial

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32, Float32MultiArray
from std_srvs.srv import SetBool

from toto_robot.encoders.base import FrameFormatError
from toto_robot.policies import load_policy
from toto_robot.policies.ood import OODMonitor, load_reference
from toto_robot.ros import control
from toto_robot.ros.ood import ood_status, score_msg
from toto_robot.ros.convert import ImageEncodingError, array_to_multiarray, compressed_msg_to_array, image_msg_to_array
from toto_robot.ros_nodes.common import ConfigError, Diagnostics, Proprioception, StreamStats, apply_precision, camera_qos, declare, spin
from toto_robot.utils.io import CheckpointError

OUTPUTS = ("twist", "joint_trajectory", "array")

DEFAULTS = {
    "policy_dir": "",
    "image_topic": "camera/image_raw",
    "camera_topics": [],  # the topics of the policy's other cameras (policy.cameras after the first), in its order
    "camera_sync_tolerance_s": 0.02,  # a frame pairs with another camera's frame whose stamp is at most this far from it
    "compressed": False,
    "qos_depth": 10,
    "qos_reliability": "best_effort",
    "state_msg_type": "array",  # array (std_msgs/Float32MultiArray) | joint_state (sensor_msgs/JointState + joint_names)
    "state_topic": "robot/state",
    "joint_names": [],  # arm joints, in the policy's state order
    "gripper_joint_names": [],  # finger joints whose positions follow the arm's velocities in the state
    "pose_topic": "",  # geometry_msgs/PoseStamped of the end effector: its xyz ends the state vector
    "output": "twist",  # twist | joint_trajectory | array
    "twist_topic": "toto/cmd_twist",
    "frame_id": "base_link",
    "max_linear_speed": 0.1,  # m/s at action 1
    "max_angular_speed": 0.5,  # rad/s at action 1 (policies that output rotation rates)
    "gripper_topic": "toto/gripper_cmd",
    "gripper_open_position": 0.04,  # gripper command at action -1
    "gripper_closed_position": 0.0,  # gripper command at action +1
    "trajectory_topic": "toto/joint_trajectory",
    "max_joint_speed": 0.5,  # rad/s at action 1
    "trajectory_time_s": 0.1,  # time_from_start of the trajectory's one point
    "action_topic": "toto/action",
    "command_stamp": "now",  # now | frame
    "features_topic": "toto/features",
    "ood_topic": "toto/ood_score",  # std_msgs/Float32: each frame's out-of-distribution score (needs the policy's ood.safetensors)
    "ood_average_topic": "toto/ood_score_average",  # std_msgs/Float32: its moving average (what /diagnostics and the gate read)
    "ood_gate": False,  # hold commands while the moving average stays above the reference's ERROR threshold
    "rate_hz": 10.0,  # 0 = once per new frame
    "stale_timeout_s": 0.5,
    "max_action_norm": 1.0,  # L2 bound on the motion part (all but the gripper); 0 = none (each entry still clipped to [-1, 1])
    "enabled": True,
    "device": "cpu",
    "torch_threads": 1,  # intra-op threads for inference; 1 leaves cores to DDS and the executor (0 = torch default)
    "precision": "",  # "" = the policy's encoder as saved; bfloat16: its backbone's matmuls in bfloat16 (faster, not bit-exact)
    "diagnostics_period_s": 1.0,
}


def gate_action(action: np.ndarray, max_norm: float) -> np.ndarray:
    a = np.clip(np.asarray(action, np.float32), -1, 1)
    motion = a[:-1]
    n = float(np.linalg.norm(motion))
    if n > max_norm > 0:
        a[:-1] = motion * (max_norm / n)
    return a


def action_space_of(policy) -> str | None:
    space = policy.meta.get("action_space")
    if space:
        return space
    return {4: "ee_delta", 8: "joint_delta"}.get(int(policy.action_dim))  # PPO on the sim suite records no name


def check_params(p: dict, policy) -> None:
    """Refuse, at start, parameters that cannot drive this policy."""
    if p["output"] not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {p['output']!r}")
    if p["command_stamp"] not in ("now", "frame"):
        raise ConfigError(f"command_stamp must be 'now' or 'frame', got {p['command_stamp']!r}")
    for k in ("max_linear_speed", "max_angular_speed", "max_joint_speed", "trajectory_time_s"):
        if not p[k] > 0:
            raise ConfigError(f"{k} must be > 0, got {p[k]}")
    if p["gripper_open_position"] == p["gripper_closed_position"]:
        raise ConfigError("gripper_open_position and gripper_closed_position are equal: the gripper command would carry nothing")
    if p["rate_hz"] < 0:
        raise ConfigError(f"rate_hz must be >= 0 (0 = once per frame), got {p['rate_hz']}")
    space, motion = action_space_of(policy), int(policy.action_dim) - 1
    if p["output"] == "twist" and (space != "ee_delta" or motion not in (3, 6)):
        raise ConfigError(f"output:=twist needs an end-effector policy (action_space ee_delta, 3 or 6 motion entries + gripper); "
                          f"this one is {space} with {policy.action_dim} entries. Use output:=joint_trajectory or array")
    if p["output"] == "joint_trajectory":
        if space != "joint_delta":
            raise ConfigError(f"output:=joint_trajectory needs a joint-space policy (action_space joint_delta); this one is {space}: "
                              f"use output:=twist")
        if p["state_msg_type"] != "joint_state" or len(p["joint_names"]) != motion:
            raise ConfigError(f"output:=joint_trajectory needs state_msg_type:=joint_state and {motion} joint_names "
                              f"(the current positions the trajectory starts from); got {p['state_msg_type']} and {p['joint_names']}")
    if p["state_msg_type"] == "joint_state":
        if not p["joint_names"]:
            raise ConfigError("state_msg_type:=joint_state needs joint_names (the arm joints in the policy's state order)")
        dim = 2 * len(p["joint_names"]) + len(p["gripper_joint_names"]) + (3 if p["pose_topic"] else 0)
        if dim != policy.state_dim:
            raise ConfigError(f"joint_names ({len(p['joint_names'])} -> positions + velocities), gripper_joint_names "
                              f"({len(p['gripper_joint_names'])}) and pose_topic ({'xyz' if p['pose_topic'] else 'none'}) make a "
                              f"{dim}-d state; the policy was trained with {policy.state_dim}")


class PolicyNode(Node):
    NODE_NAME = "toto_policy"

    def __init__(self, **node_kwargs):
        super().__init__(self.NODE_NAME, **node_kwargs)
        self.p = p = declare(self, DEFAULTS)
        if not p["policy_dir"]:
            raise ConfigError("toto_policy_node needs the parameter policy_dir (a folder written by toto-robot train-policy)")
        qos = camera_qos(p["qos_depth"], p["qos_reliability"])
        if p["torch_threads"] > 0:
            import torch

            torch.set_num_threads(p["torch_threads"])
        try:
            self.policy = load_policy(p["policy_dir"], device=p["device"])
        except (CheckpointError, FileNotFoundError, ValueError) as e:
            raise ConfigError(str(e)) from e
        if getattr(self.policy, "encoder", None) is not None:
            apply_precision(self.policy.encoder, p["precision"])
        check_params(p, self.policy)
        self.cameras = list(getattr(self.policy, "cameras", ["image"]))  # observation keys: the first is image_topic's
        if len(p["camera_topics"]) != len(self.cameras) - 1:
            raise ConfigError(f"the policy reads cameras {self.cameras}: give camera_topics with {len(self.cameras) - 1} topic(s), "
                              f"one for each of {self.cameras[1:]} in that order (image_topic feeds {self.cameras[0]!r}); "
                              f"got {p['camera_topics']}")
        if p["camera_sync_tolerance_s"] < 0:
            raise ConfigError(f"camera_sync_tolerance_s must be >= 0, got {p['camera_sync_tolerance_s']}")
        self.partners = {key: deque(maxlen=max(2, p["qos_depth"])) for key in self.cameras[1:]}  # (stamp ns, arrival, image)
        self.last_paired, self.unpaired, self.missing_camera, self.pair_held = time.monotonic(), 0, None, False
        try:
            reference = load_reference(p["policy_dir"], self.get_logger())
        except (CheckpointError, ValueError) as e:
            raise ConfigError(str(e)) from e
        self.ood = OODMonitor(reference) if reference is not None else None
        self.ood_held = False  # the gate is holding commands for an out-of-distribution view
        self.ood_holds = 0  # frames whose command the gate held
        if p["ood_gate"] and self.ood is None:
            self.get_logger().warning("ood_gate:=true but the policy has no OOD reference: nothing to gate on")
        enc = getattr(self.policy, "encoder", None)
        self.min_side = 2 * int(getattr(enc, "input_size", 0))
        self.enabled = bool(p["enabled"])
        self.event_driven = p["rate_hz"] == 0
        self.image: np.ndarray | None = None
        self.image_time, self.image_stamp, self.acted_stamp, self.image_header_stamp = -np.inf, -1, -1, None
        self.stale = False
        self.actions = 0
        self.stats = StreamStats()
        # state subscriptions first, so that a state and a frame that arrive together are read in that order
        self.proprio = Proprioception(self, p, on_update=self._try_act_on_frame)
        self.create_subscription(CompressedImage if p["compressed"] else Image, p["image_topic"], self.on_image, qos)
        for key, topic in zip(self.cameras[1:], p["camera_topics"]):
            self.create_subscription(CompressedImage if p["compressed"] else Image, topic, partial(self.on_partner, key), qos)
        self._make_outputs()
        self.features_pub = self.create_publisher(Float32MultiArray, p["features_topic"], 10)
        if self.ood is not None:
            self.ood_pub = self.create_publisher(Float32, p["ood_topic"], 10)
            self.ood_average_pub = self.create_publisher(Float32, p["ood_average_topic"], 10)
        self.create_service(SetBool, "~/enable", self.on_enable)
        if not self.event_driven:
            self.create_timer(1.0 / p["rate_hz"], self.tick)
        self.diagnostics = Diagnostics(self, self.stats, p["diagnostics_period_s"], f"{self.get_name()}: policy",
                                       hardware_id=self.resolve_topic_name(p["image_topic"]),
                                       extra=lambda: {"actions": self.actions, "enabled": self.enabled, "stale": self.stale,
                                                      "ood_holds": self.ood_holds, "unpaired": self.unpaired},
                                       more=lambda: [ood_status(self.ood, f"{self.get_name()}: ood", self.ood_held)] if self.ood else [])
        self.get_logger().info(f"policy {p['policy_dir']} ({self.policy.meta.get('task', '?')}): "
                               f"{' + '.join([p['image_topic'], *p['camera_topics']])} + "
                               f"{p['state_topic']} ({p['state_msg_type']}) -> {p['output']} "
                               f"{'once per frame' if self.event_driven else 'at %g Hz' % p['rate_hz']}")

    def _make_outputs(self) -> None:
        p = self.p
        self.twist_pub = self.gripper_pub = self.trajectory_pub = self.action_pub = None
        if p["output"] == "twist":
            from geometry_msgs.msg import TwistStamped

            self.twist_pub = self.create_publisher(TwistStamped, p["twist_topic"], 10)
        elif p["output"] == "joint_trajectory":
            from trajectory_msgs.msg import JointTrajectory

            self.trajectory_pub = self.create_publisher(JointTrajectory, p["trajectory_topic"], 10)
        else:
            self.action_pub = self.create_publisher(Float32MultiArray, p["action_topic"], 10)
        if p["output"] != "array":
            from std_msgs.msg import Float64MultiArray

            self.gripper_pub = self.create_publisher(Float64MultiArray, p["gripper_topic"], 10)

    # ---- inputs ----
    @property
    def state(self) -> np.ndarray | None:
        return self.proprio.vector

    def _read_frame(self, msg, camera: str) -> np.ndarray | None:
        """A camera message -> uint8 [H, W, 3], or None after counting and logging why it cannot be read."""
        try:
            return compressed_msg_to_array(msg, self.min_side) if self.p["compressed"] else image_msg_to_array(msg, self.min_side)
        except ImageEncodingError as e:
            with self.stats.lock:
                self.stats.unreadable += 1
            self.get_logger().error(f"dropping {camera} frame: {e}", throttle_duration_sec=5.0)
        except Exception as e:  # noqa: BLE001 - an exception here would end the executor's spin: count it, go on
            with self.stats.lock:
                self.stats.errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
            self.get_logger().error(f"{type(e).__name__} while reading a {camera} frame:\n{traceback.format_exc()}", throttle_duration_sec=5.0)
        return None

    def on_image(self, msg, info) -> None:  # two arguments: rclpy then passes the MessageInfo (sequence numbers)
        self.stats.on_receive(info)
        img = self._read_frame(msg, self.cameras[0])
        if img is None:
            return
        stamp = control.stamp_ns(msg.header.stamp)
        if self.event_driven and stamp and stamp <= self.acted_stamp:
            return  # the same frame again (a bridge re-sending it): it was acted on already
        self.image, self.image_time, self.image_stamp, self.image_header_stamp = img, time.monotonic(), stamp, msg.header.stamp
        self._try_act_on_frame()

    def on_partner(self, key: str, msg) -> None:
        """A frame of one of the policy's other cameras: buffered for pairing with ``image_topic``'s frames."""
        img = self._read_frame(msg, key)
        if img is None:
            return
        self.partners[key].append((control.stamp_ns(msg.header.stamp), time.monotonic(), img))
        self._try_act_on_frame()  # the newest image_topic frame may have been waiting for this one

    def paired_views(self, settled: bool = False) -> dict | None:
        """{camera key: image} for every camera, the others paired to the newest image_topic frame; None when a camera has no
        frame within camera_sync_tolerance_s of it (``missing_camera`` names it). ``settled``: also None while a closer frame
        may still come, i.e. a stamped camera has no frame with the same stamp and none newer than it yet (frames of two
        topics arrive in no set order)."""
        views = {self.cameras[0]: self.image}
        tol = self.p["camera_sync_tolerance_s"]
        for key, frames in self.partners.items():
            stamped = self.image_stamp > 0 and all(s for s, _, _ in frames)
            gaps = [abs(s - self.image_stamp) * 1e-9 if stamped else abs(t - self.image_time) for s, t, _ in frames]
            best = int(np.argmin(gaps)) if gaps else -1
            waiting = settled and stamped and best >= 0 and gaps[best] > 0 and not any(s >= self.image_stamp for s, _, _ in frames)
            if best < 0 or gaps[best] > tol or waiting:
                self.missing_camera = key
                return None
            views[key] = frames[best][2]
        return views

    def on_enable(self, request, response):
        self.enabled = bool(request.data)
        self.policy.reset()  # a chunking policy must not resume with actions planned before a stop
        response.success, response.message = True, f"policy output {'enabled' if self.enabled else 'disabled'}"
        self.get_logger().info(response.message)
        return response

    # ---- acting ----
    def _try_act_on_frame(self) -> None:
        if not self.event_driven or self.image is None or self.image_stamp == self.acted_stamp:
            return
        ss = self.proprio.stamp
        if ss is not None and ss < self.image_stamp and time.monotonic() - self.image_time < self.p["stale_timeout_s"]:
            return  # wait for a state at least as new as the frame
        if self.partners and self.paired_views(settled=True) is None and time.monotonic() - self.image_time < self.p["stale_timeout_s"]:
            return  # wait for the other cameras' frames of this moment
        if self.tick():
            self.acted_stamp = self.image_stamp

    def tick(self) -> bool:
        """Act on the newest frame if the gate allows; returns whether a command went out (or acting failed)."""
        if not self.enabled or self.image is None:
            return False
        if time.monotonic() - self.image_time > self.p["stale_timeout_s"]:
            if not self.stale:
                self.get_logger().warning(f"no frame for {self.p['stale_timeout_s']} s on {self.p['image_topic']}: output stopped")
                self.policy.reset()
                if self.ood is not None:  # a new view after a gap starts its own average
                    self.ood.reset()
            self.stale = True
            return False
        self.stale = False
        state = self.state
        if state is None:
            missing = self.proprio.missing()
            self.get_logger().warning(f"no state on {self.p['state_topic']} yet{f' (missing {missing})' if missing else ''}; waiting",
                                   throttle_duration_sec=5.0)
            return False
        views = self.paired_views()
        if views is None:
            self.unpaired += 1
            if time.monotonic() - self.last_paired > self.p["stale_timeout_s"] and not self.pair_held:
                self.get_logger().warning(f"no {self.missing_camera} frame within {self.p['camera_sync_tolerance_s']} s of the "
                                          f"{self.p['image_topic']} frames for {self.p['stale_timeout_s']} s: output stopped")
                self.policy.reset()  # as for a stopped camera
                self.pair_held = True
            return False
        if self.pair_held:
            self.get_logger().info("every camera paired again: output resumes")
        self.last_paired, self.pair_held = time.monotonic(), False
        t0 = time.perf_counter()
        try:
            self.act({**views, "state": state})
        except FrameFormatError as e:
            with self.stats.lock:
                self.stats.unreadable += 1
            self.get_logger().error(f"cannot act: {e}", throttle_duration_sec=5.0)
            return True
        except Exception as e:  # noqa: BLE001 - the node must keep serving; the error is counted and logged
            with self.stats.lock:
                self.stats.errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
            self.get_logger().error(f"{type(e).__name__} while acting (the node goes on; {self.stats.errors} so far):\n"
                                    f"{traceback.format_exc()}", throttle_duration_sec=5.0)
            return True
        self.stats.on_done(self.image_stamp if self.image_stamp > 0 else None, self.get_clock().now().nanoseconds, time.perf_counter() - t0)
        return True

    def act(self, obs: dict) -> None:
        if hasattr(self.policy, "act_with_features"):
            action, feats = self.policy.act_with_features(obs)
        else:  # a policy that gives no features
            action, feats = self.policy.act(obs), None
        if feats is not None:
            self.features_pub.publish(array_to_multiarray(feats))
        if self.ood is not None and feats is not None and self.ood_gate_holds(feats):
            return
        self.publish_action(gate_action(action, self.p["max_action_norm"]), obs["state"])
        self.actions += 1

    def ood_gate_holds(self, feats: np.ndarray) -> bool:
        """Score the frame, publish the score and its average; whether ``ood_gate`` holds this frame's command."""
        score, average, level = self.ood.update(feats)
        self.ood_pub.publish(score_msg(score))
        self.ood_average_pub.publish(score_msg(average))
        hold = bool(self.p["ood_gate"]) and level == "error"
        limit = self.ood.ref.thresholds["average_error"]
        if hold and not self.ood_held:
            self.get_logger().warning(f"out-of-distribution view: moving average score {average:.3g} above the ERROR threshold "
                                      f"{limit:.3g}; holding commands (ood_gate) until it falls below")
            self.policy.reset()  # a chunking policy must not resume with actions planned for what it saw before
        elif self.ood_held and not hold:
            self.get_logger().info(f"moving average score {average:.3g} back below {limit:.3g}: commands resume")
        self.ood_held = hold
        self.ood_holds += hold
        return hold

    def publish_action(self, a: np.ndarray, state: np.ndarray) -> None:
        p = self.p
        stamp = self.image_header_stamp if p["command_stamp"] == "frame" else self.get_clock().now().to_msg()
        if self.action_pub is not None:
            self.action_pub.publish(array_to_multiarray(a))
            return
        # the gripper first: a bridge that pairs commands with frames by the motion command's stamp then has both
        self.gripper_pub.publish(control.gripper_msg(float(a[-1]), p["gripper_open_position"], p["gripper_closed_position"]))
        if self.twist_pub is not None:
            self.twist_pub.publish(control.twist_from_action(a, p["max_linear_speed"], p["max_angular_speed"], p["frame_id"], stamp))
        else:
            q = state[: len(p["joint_names"])]
            self.trajectory_pub.publish(control.joint_trajectory_from_action(a, p["joint_names"], q, p["max_joint_speed"],
                                                                             p["trajectory_time_s"], stamp))


def main(args=None):
    spin(PolicyNode, args)


if __name__ == "__main__":
    main()
