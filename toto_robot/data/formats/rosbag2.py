"""rosbag2 recordings (MCAP or sqlite3) to demonstrations and back, with ``rosbags`` (no ROS install needed).

Import: ``import_rosbag2`` reads one bag, a bare ``.mcap``/``.db3`` file, or a folder of bags (each bag
one resumable unit, keyed by the sha256 of its files, see ``common``) and picks three topics:

* camera (``image_topic``): ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) or ``CompressedImage`` (JPEG/PNG);
* proprioception (``state_topic``): ``sensor_msgs/JointState`` ([position, velocity, effort] in the
  first message's joint order), ``geometry_msgs/PoseStamped`` ([x, y, z, qx, qy, qz, qw]) or
  ``std_msgs/Float32MultiArray`` / ``Float64MultiArray``;
* action (``action_topic``): ``geometry_msgs/TwistStamped`` / ``Twist`` ([linear, angular]),
  ``trajectory_msgs/JointTrajectory`` (first point's positions) or a multi-array; or, with
  ``action_from=next_state`` / ``next_state_delta``, the next frame's state (or its change).

Several topics, the ROS nodes' conventions. A real arm records its state and commands on several
topics; ``state_topics`` / ``action_topics`` (lists, in place of ``state_topic`` / ``action_topic``)
read them the way ``ros_nodes/policy_node.py`` and ``demo_recorder_node.py`` do, with the same
functions (``toto_robot.ros.control``) and the same parameters, so a bag of the policy node's own
commands imports into the actions the policy was trained on:

* ``state_topics``: their parts concatenated in the order listed. ``sensor_msgs/JointState`` ->
  ``[positions(joint_names), velocities(joint_names), positions(gripper_joint_names)]``, merged by
  joint name (``JointStateMapper``: the driver's order does not matter, arm and fingers may come in
  separate messages; a named joint the topic never carries is an error naming it and the names
  present); ``geometry_msgs/PoseStamped`` -> xyz (``pose_quat``: then qx, qy, qz, qw, which the
  policy node does not read); a multi-array -> its data. The policy node's layout is the joints, then
  the pose xyz: list them in that order.
* ``action_topics``: one motion topic and one gripper topic, giving ``[motion..., gripper]`` in
  [-1, 1] whatever order they are listed in. ``geometry_msgs/TwistStamped`` / ``Twist`` -> linear /
  ``max_linear_speed`` (then angular / ``max_angular_speed`` with ``twist_angular``), clipped to
  [-1, 1]; ``trajectory_msgs/JointTrajectory`` -> the first point's velocities (by ``joint_names``) /
  ``max_joint_speed``; ``std_msgs/Float64MultiArray`` (or Float32) ``[position]`` -> the gripper,
  ``gripper_open_position`` .. ``gripper_closed_position`` mapped onto -1 .. +1. Commands beyond the
  speeds are clipped (as the recorder does) and counted in a warning. ``action_space`` defaults to
  ``ee_delta`` (twist) or ``joint_delta`` (trajectory), what the policy node checks before driving.

Each listed topic is aligned to the frames on its own, by the rules below; ``gripper_hold_s`` lets a
gripper command stay in force longer than ``tolerance_s`` (controllers commanded only on change).

A topic left unset is picked when one topic of a fitting type exists (ties broken by names such as
"state"/"joint" and "action"/"cmd"); otherwise the error lists the candidates.

Alignment. Each camera frame is one step. A message's time is its header stamp (``stamps=header``,
messages without a header use the bag's log time) or always the log time (``stamps=log``).
A frame takes the last state at or before it (``state_align=latest``, the ROS demo recorder's rule;
or ``nearest`` in time, either side), which must lie within ``tolerance_s`` of it; and the action is
the last one commanded before the next frame (the recorder's rule too: the command issued after
seeing this frame), which must not be older than ``tolerance_s`` before the frame. Frames at the start
of an episode before the first state or action are dropped (and counted); a frame inside an episode
without a state or action in tolerance stops the import with the frame, times and gap named.

Episodes. With ``episode_topic`` (``std_msgs/Bool``, data = success, as the simulator bridge
publishes; or ``std_msgs/Empty``) an episode ends at each message; with ``gap_s`` a pause longer than
that between camera frames starts a new one; otherwise each bag is one episode. Frames after the last
end signal form an episode of their own (success unknown: ``success``).

Export: ``export_rosbag2`` writes a demo folder as a rosbag2 (MCAP by default) on the topics the
simulator bridge uses (camera/image_raw rgb8, robot/state, toto/action, sim/episode_done), so
``ros2 bag play`` replays it to the project's nodes; the demo meta and seeds ride in the bag's
custom data, so importing the export gives back every frame, state and action bit for bit.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from toto_robot.constants import ACTION, LANGUAGE, OBS_IMAGE, OBS_STATE, SEED, SUCCESS
from toto_robot.data.demos import DemoDataset, DemoMeta, camera_keys
from toto_robot.data.formats.common import DemoImportError, Episode, Unit, content_key, run_import
from toto_robot.ros.convert import ImageEncodingError, compressed_msg_to_array, image_msg_to_array

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
STATE_TYPES = ("sensor_msgs/msg/JointState", "geometry_msgs/msg/PoseStamped", "std_msgs/msg/Float32MultiArray", "std_msgs/msg/Float64MultiArray")
ACTION_TYPES = ("geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/Twist", "trajectory_msgs/msg/JointTrajectory",
                "std_msgs/msg/Float32MultiArray", "std_msgs/msg/Float64MultiArray")
EPISODE_TYPES = ("std_msgs/msg/Bool", "std_msgs/msg/Empty")
META_KEY, SEEDS_KEY = "toto_robot.demo_meta", "toto_robot.episode_seeds"


@dataclass
class RosbagImportConfig:
    src: str  # a bag folder, a .mcap/.db3 file, or a folder of bags
    out_dir: str
    image_topic: str | None = None
    state_topic: str | None = None
    action_topic: str | None = None
    action_from: str = "topic"  # topic | next_state | next_state_delta
    episode_topic: str | None = None
    gap_s: float | None = None
    tolerance_s: float = 0.05
    state_align: str = "latest"  # latest (last state at or before the frame) | nearest (in time, either side)
    stamps: str = "header"  # header | log
    success: bool = False  # for episodes without an end signal that says
    task: str | None = None
    fps: float | None = None
    action_space: str | None = None
    image_size: int | None = None
    min_frames: int = 2
    skip_bad: bool = False
    # several topics, read as the policy node and demo recorder read them (see the module doc)
    state_topics: list[str] | None = None
    joint_names: list[str] | None = None  # arm joints in the policy's state order
    gripper_joint_names: list[str] | None = None  # finger joints whose positions follow the arm's velocities
    pose_quat: bool = False  # PoseStamped -> xyz + quaternion (the policy node reads xyz only)
    action_topics: list[str] | None = None
    twist_angular: bool = False  # [vx, vy, vz, wx, wy, wz, gripper] rather than [vx, vy, vz, gripper]
    max_linear_speed: float = 0.1  # m/s at action 1
    max_angular_speed: float = 0.5  # rad/s at action 1
    max_joint_speed: float = 0.5  # rad/s at action 1 (JointTrajectory commands)
    gripper_open_position: float = 0.04  # gripper command at action -1
    gripper_closed_position: float = 0.0  # gripper command at action +1
    gripper_hold_s: float | None = None  # how long a gripper command stays in force (None: tolerance_s)
    # more cameras: a list of image topics (each stored as <name>_image, the name read off the topic: camera_names) or
    # {name: topic}; each frame pairs with the other cameras' frame of the nearest stamp within tolerance_s
    camera_topics: list[str] | dict[str, str] | None = None

    def __post_init__(self):
        from toto_robot.utils.config import ConfigError, check_bool, check_choice, check_number

        check_choice(self.action_from, "format.read.action_from", ("topic", "next_state", "next_state_delta"))
        check_choice(self.stamps, "format.read.stamps", ("header", "log"))
        check_choice(self.state_align, "format.read.state_align", ("latest", "nearest"))
        self.tolerance_s = check_number(self.tolerance_s, "format.read.tolerance_s", low=0, low_open=True)
        if self.gap_s is not None:
            self.gap_s = check_number(self.gap_s, "format.read.gap_s", low=0, low_open=True)
        self.camera_topics = camera_names(self.camera_topics, self.image_topic)
        self.state_topics = _topic_list(self.state_topics, "format.read.state_topics")
        self.action_topics = _topic_list(self.action_topics, "format.read.action_topics")
        self.joint_names = _name_list(self.joint_names, "format.read.joint_names")
        self.gripper_joint_names = _name_list(self.gripper_joint_names, "format.read.gripper_joint_names")
        if self.state_topics is not None and self.state_topic:
            raise ConfigError(f"format.read: give state_topic ({self.state_topic}) or state_topics ({self.state_topics}), not both")
        if self.action_topics is not None and self.action_topic:
            raise ConfigError(f"format.read: give action_topic ({self.action_topic}) or action_topics ({self.action_topics}), not both")
        if self.action_topics is not None and self.action_from != "topic":
            raise ConfigError(f"format.read.action_topics is read with action_from=topic, not {self.action_from}")
        if self.state_topics is None and (self.joint_names or self.gripper_joint_names or self.pose_quat):
            raise ConfigError("format.read.joint_names, gripper_joint_names and pose_quat shape the state of state_topics: "
                              "list the state topics there, e.g. state_topics=[/joint_states,/tcp_pose] (state_topic keeps "
                              "each message's own layout)")
        self.pose_quat = check_bool(self.pose_quat, "format.read.pose_quat")
        self.twist_angular = check_bool(self.twist_angular, "format.read.twist_angular")
        for k in ("max_linear_speed", "max_angular_speed", "max_joint_speed"):
            setattr(self, k, check_number(getattr(self, k), f"format.read.{k}", low=0, low_open=True))
        self.gripper_open_position = check_number(self.gripper_open_position, "format.read.gripper_open_position")
        self.gripper_closed_position = check_number(self.gripper_closed_position, "format.read.gripper_closed_position")
        if self.gripper_open_position == self.gripper_closed_position:
            raise ConfigError("format.read.gripper_open_position and gripper_closed_position are equal: the gripper command would carry nothing")
        if self.gripper_hold_s is not None:
            if self.action_topics is None:
                raise ConfigError("format.read.gripper_hold_s holds the gripper command of action_topics; set action_topics "
                                  "(e.g. [/servo_node/delta_twist_cmds, /gripper_controller/commands])")
            self.gripper_hold_s = check_number(self.gripper_hold_s, "format.read.gripper_hold_s", low=0, low_open=True)

    def options(self) -> dict:
        """What makes two imports mean the same (the ledger compares it); the several-topic settings only where used."""
        out = {k: v for k, v in asdict(self).items() if k not in ("src", "out_dir", "skip_bad")}
        if self.state_topics is None:
            for k in STATE_TOPICS_KEYS:
                out.pop(k)
        if self.action_topics is None:
            for k in ACTION_TOPICS_KEYS:
                out.pop(k)
        if self.camera_topics is None:
            out.pop("camera_topics")
        return out


STATE_TOPICS_KEYS = ("state_topics", "joint_names", "gripper_joint_names", "pose_quat")
ACTION_TOPICS_KEYS = ("action_topics", "twist_angular", "max_linear_speed", "max_angular_speed", "max_joint_speed",
                      "gripper_open_position", "gripper_closed_position", "gripper_hold_s")


def _name_list(value, key: str) -> list[str] | None:
    from toto_robot.utils.config import ConfigError

    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key} must be a list of names, got {value!r}")
    dup = sorted({v for v in value if list(value).count(v) > 1})
    if dup:
        raise ConfigError(f"{key} lists {dup} twice")
    return list(value)


def _topic_list(value, key: str) -> list[str] | None:
    from toto_robot.utils.config import ConfigError

    names = _name_list(value, key)
    if names is None:
        return None
    if not names:
        raise ConfigError(f"{key} is empty: list the topics, or leave it null")
    return [_topic_name(n) for n in names]


def _topic_name(name: str) -> str:
    return name if name.startswith("/") else "/" + name


def find_bags(src: str | Path) -> list[Path]:
    """A bag folder (has metadata.yaml), a bare .mcap/.db3 file, or every bag below a folder."""
    src = Path(src)
    if not src.exists():
        raise DemoImportError(f"{src} does not exist")
    if src.is_file():
        return [src]
    if (src / "metadata.yaml").is_file():
        return [src]
    bags = sorted(p.parent for p in src.rglob("metadata.yaml"))
    loose = sorted(p for ext in ("*.mcap", "*.db3") for p in src.rglob(ext) if not any(b in p.parents for b in bags))
    found = sorted(bags + loose)
    if not found:
        raise DemoImportError(f"{src}: no rosbag2 (a folder with metadata.yaml, or .mcap/.db3 files)")
    return found


def _short(msgtype: str) -> str:
    return msgtype.replace("/msg/", "/")


IMAGE_SUFFIXES = ("image_raw", "image_rect_color", "image_rect", "image_color", "image", "compressed", "color", "rgb")


def camera_names(camera_topics, image_topic: str | None = None) -> dict[str, str] | None:
    """``format.read.camera_topics`` -> {demo folder key ("<name>_image"): topic}. A list names each camera after its topic,
    the last part that is not an image suffix (``/camera/wrist/image_raw`` -> ``wrist_image``); a dict gives the names."""
    from toto_robot.utils.config import ConfigError

    if camera_topics is None:
        return None
    if isinstance(camera_topics, str) or not hasattr(camera_topics, "__iter__"):
        raise ConfigError(f"format.read.camera_topics must be a list of image topics or {{name: topic}}, got {camera_topics!r}")
    if hasattr(camera_topics, "items"):
        named = {str(k): _topic_name(str(v)) for k, v in camera_topics.items()}
    else:
        named = {}
        for topic in map(str, camera_topics):
            parts = [q for q in _topic_name(topic).split("/") if q]
            while len(parts) > 1 and parts[-1] in IMAGE_SUFFIXES:
                parts.pop()
            named[parts[-1] if parts else topic] = _topic_name(topic)
    fields = {f"{name}_image": topic for name, topic in named.items()}
    if len(fields) != len(list(camera_topics)) or "image_image" in fields or (image_topic and _topic_name(image_topic) in fields.values()):
        raise ConfigError(f"format.read.camera_topics: {camera_topics!r} gives clashing camera names {sorted(fields)} (or repeats "
                          f"image_topic): name them, e.g. 'format.read.camera_topics={{wrist: /camera/wrist/image_raw}}'")
    return fields


def _pick(topics: dict[str, str], wanted: str | None, types: tuple[str, ...], what: str, hints: tuple[str, ...], where: str,
          exclude: tuple[str | None, ...] = ()) -> str:
    if wanted:
        name = _topic_name(wanted)
        if name not in topics:
            raise DemoImportError(f"{where}: no topic {name} for the {what}; topics: " + ", ".join(f"{t} ({_short(m)})" for t, m in sorted(topics.items())))
        if topics[name] not in types:
            raise DemoImportError(f"{where}: {name} carries {_short(topics[name])}; the {what} must be one of {', '.join(map(_short, types))}")
        return name
    cands = [t for t, m in sorted(topics.items()) if m in types and t not in exclude]
    if len(cands) > 1:
        hinted = [t for t in cands if any(h in t.lower() for h in hints)]
        cands = hinted if len(hinted) == 1 else cands
    if len(cands) != 1:
        listing = ", ".join(f"{t} ({_short(topics[t])})" for t in cands) or "none"
        raise DemoImportError(f"{where}: choose the {what} topic; candidates: {listing}")
    return cands[0]


def _stamp_ns(msg, log_ns: int, stamps: str) -> int:
    header = getattr(msg, "header", None)
    if stamps == "header" and header is not None:
        ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
        if ns > 0:
            return ns
    return int(log_ns)


def _vector(msg, msgtype: str, joint_order: list | None, where: str) -> tuple[np.ndarray, list | None]:
    if msgtype == "sensor_msgs/msg/JointState":
        names = list(msg.name)
        if joint_order is None:
            joint_order = names
        if names != joint_order:
            if sorted(names) != sorted(joint_order):
                raise DemoImportError(f"{where}: joint names changed from {joint_order} to {names}")
            idx = [names.index(n) for n in joint_order]
        else:
            idx = None
        parts = []
        for field in (msg.position, msg.velocity, msg.effort):
            arr = np.asarray(field, np.float64)
            parts.append(arr[idx] if idx is not None and len(arr) == len(names) else arr)
        return np.concatenate(parts), joint_order
    if msgtype == "geometry_msgs/msg/PoseStamped":
        p, q = msg.pose.position, msg.pose.orientation
        return np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w]), joint_order
    if msgtype in ("geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/Twist"):
        tw = msg.twist if hasattr(msg, "twist") else msg
        return np.array([tw.linear.x, tw.linear.y, tw.linear.z, tw.angular.x, tw.angular.y, tw.angular.z]), joint_order
    if msgtype == "trajectory_msgs/msg/JointTrajectory":
        if not len(msg.points):
            raise DemoImportError(f"{where}: JointTrajectory without points")
        return np.asarray(msg.points[0].positions, np.float64), joint_order
    return np.asarray(msg.data, np.float64), joint_order


@dataclass
class Stream:
    times: np.ndarray  # int64 ns, sorted
    values: list
    msgtype: str = ""


MOTION_TYPES = ("geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/Twist", "trajectory_msgs/msg/JointTrajectory")
MULTIARRAY_TYPES = ("std_msgs/msg/Float32MultiArray", "std_msgs/msg/Float64MultiArray")


class Decoder:
    """One state or action topic's messages -> vectors (None: nothing complete yet); ``finish`` checks the whole topic."""

    def __init__(self, topic: str, msgtype: str, convert, finish=None, clipped: str = ""):
        self.topic, self.msgtype, self.convert, self._finish = topic, msgtype, convert, finish
        self.clipped_what, self.clipped, self.count = clipped, 0, 0  # commands beyond the speeds / gripper range

    def __call__(self, msg, here: str) -> np.ndarray | None:
        from toto_robot.ros.control import ControlError

        self.count += 1
        try:
            return self.convert(msg, here)
        except ControlError as e:
            raise DemoImportError(f"{here}: {e}") from e

    def finish(self, where: str) -> None:
        if self._finish is not None:
            self._finish(where)
        if self.clipped:
            log.warning("%s: %d of %d commands on %s exceed %s and were clipped to [-1, 1], as the demo recorder does",
                        where, self.clipped, self.count, self.topic, self.clipped_what)


def _legacy_decoder(topic: str, msgtype: str) -> Decoder:
    """``state_topic`` / ``action_topic``: each message's own layout (see ``_vector``)."""
    order: dict = {"joints": None}

    def convert(msg, here):
        vec, order["joints"] = _vector(msg, msgtype, order["joints"], here)
        return vec

    return Decoder(topic, msgtype, convert)


def _state_decoder(topic: str, msgtype: str, cfg: RosbagImportConfig, where: str) -> Decoder:
    """A topic of ``state_topics``, read as the policy node's ``Proprioception`` reads it."""
    from toto_robot.ros import control

    if msgtype == "sensor_msgs/msg/JointState":
        if not cfg.joint_names:
            raise DemoImportError(f"{where}: state topic {topic} is a JointState: set format.read.joint_names to the arm joints "
                                  f"in the policy's state order (and gripper_joint_names for the fingers)")
        mapper = control.JointStateMapper(cfg.joint_names, cfg.gripper_joint_names or ())
        present: dict[str, None] = {}

        def convert(msg, here):
            present.update(dict.fromkeys(msg.name))
            return mapper.vector() if mapper.update(msg) else None

        def finish(where):
            missing = mapper.missing()
            if missing:
                raise DemoImportError(f"{where}: {topic} never carries joint{'s' if len(missing) > 1 else ''} "
                                      f"{', '.join(map(repr, missing))}; names present: {list(present) or 'none'}")
        return Decoder(topic, msgtype, convert, finish)
    if msgtype == "geometry_msgs/msg/PoseStamped":
        def pose(msg, here):
            xyz = control.pose_position(msg)
            if not cfg.pose_quat:
                return xyz
            q = msg.pose.orientation
            return np.concatenate([xyz, np.array([q.x, q.y, q.z, q.w], np.float32)])
        return Decoder(topic, msgtype, pose)
    if msgtype in MULTIARRAY_TYPES:
        return Decoder(topic, msgtype, lambda msg, here: np.asarray(msg.data, np.float64))
    raise DemoImportError(f"{where}: state topic {topic} carries {_short(msgtype)}; state_topics take "
                          f"{', '.join(map(_short, STATE_TYPES))}")


def _action_decoder(topic: str, msgtype: str, cfg: RosbagImportConfig, where: str) -> Decoder:
    """A topic of ``action_topics``, read as the demo recorder reads the policy node's commands."""
    from types import SimpleNamespace

    from toto_robot.ros import control

    if msgtype in ("geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/Twist"):
        def twist(msg, here):
            msg = msg if hasattr(msg, "twist") else SimpleNamespace(twist=msg)
            t = msg.twist
            lin = np.abs([t.linear.x, t.linear.y, t.linear.z]).max() / cfg.max_linear_speed
            ang = np.abs([t.angular.x, t.angular.y, t.angular.z]).max()
            dec.clipped += bool(lin > 1 or (cfg.twist_angular and ang / cfg.max_angular_speed > 1))
            dec.angular_dropped += bool(not cfg.twist_angular and ang > 0)
            return control.action_from_twist(msg, cfg.max_linear_speed, cfg.max_angular_speed, cfg.twist_angular)

        def finish(where):
            if dec.angular_dropped:
                log.warning("%s: %d of %d twists on %s carry angular rates, which twist_angular=false leaves out of the action",
                            where, dec.angular_dropped, dec.count, topic)
        dec = Decoder(topic, msgtype, twist, finish, f"max_linear_speed={cfg.max_linear_speed}"
                      + (f" or max_angular_speed={cfg.max_angular_speed}" if cfg.twist_angular else ""))
        dec.angular_dropped = 0
        return dec
    if msgtype == "trajectory_msgs/msg/JointTrajectory":
        if not cfg.joint_names:
            raise DemoImportError(f"{where}: action topic {topic} is a JointTrajectory: set format.read.joint_names "
                                  f"(the order of the joint rates in the action)")

        def trajectory(msg, here):
            if msg.points:
                v = np.asarray(msg.points[0].velocities, np.float64)
                dec.clipped += bool(v.size and np.abs(v).max() > cfg.max_joint_speed)
            return control.action_from_joint_trajectory(msg, cfg.joint_names, cfg.max_joint_speed)
        dec = Decoder(topic, msgtype, trajectory, clipped=f"max_joint_speed={cfg.max_joint_speed}")
        return dec
    if msgtype in MULTIARRAY_TYPES:
        lo, hi = sorted((cfg.gripper_open_position, cfg.gripper_closed_position))

        def gripper(msg, here):
            if len(msg.data) and not lo <= float(msg.data[0]) <= hi:
                dec.clipped += 1
            return np.array([control.gripper_from_msg(msg, cfg.gripper_open_position, cfg.gripper_closed_position)], np.float32)
        dec = Decoder(topic, msgtype, gripper, clipped=f"the gripper range [{cfg.gripper_open_position}, {cfg.gripper_closed_position}]")
        return dec
    raise DemoImportError(f"{where}: action topic {topic} carries {_short(msgtype)}; action_topics take a motion command "
                          f"({', '.join(map(_short, MOTION_TYPES))}) and a gripper command (std_msgs/Float64MultiArray)")


def _command_order(topics: list[str], types: dict[str, str], where: str) -> list[str]:
    """``action_topics`` as ``[motion, gripper]``: the policy node's action layout, whatever order they were listed in."""
    motion = [t for t in topics if types[t] in MOTION_TYPES]
    gripper = [t for t in topics if types[t] in MULTIARRAY_TYPES]
    listing = ", ".join(f"{t} ({_short(types[t])})" for t in topics)
    if len(motion) != 1 or len(gripper) != 1 or len(topics) != 2:
        raise DemoImportError(f"{where}: action_topics must be one motion command ({', '.join(map(_short, MOTION_TYPES))}) and one "
                              f"gripper command (std_msgs/Float64MultiArray), the policy node's [motion..., gripper]; got {listing}. "
                              f"A whole normalised action on one multi-array topic is action_topic")
    return motion + gripper


def read_bag(path: Path, cfg: RosbagImportConfig) -> tuple[dict[str, Stream | list[Stream]], dict, dict]:
    """The chosen topics of one bag as time-sorted streams, plus the chosen topic names and the bag's custom data.

    ``streams["state"]`` / ``streams["action"]`` are lists, one stream per topic in ``chosen``'s order."""
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.typesys import Stores, get_typestore

    where = str(path)
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED))
        reader.open()
    except (AnyReaderError, Exception) as e:  # rosbags raises several reader error types for unreadable storage
        raise DemoImportError(f"{where}: not a readable rosbag2 ({type(e).__name__}: {e})") from e
    try:
        topics = {t: info.msgtype for t, info in reader.topics.items()}
        chosen: dict = {"image": _pick(topics, cfg.image_topic, IMAGE_TYPES, "camera", ("image", "color", "rgb"), where)}
        chosen["cameras"] = {key: _pick(topics, t, IMAGE_TYPES, f"{key[:-len('_image')]} camera", (), where)
                             for key, t in (cfg.camera_topics or {}).items()}
        if chosen["image"] in chosen["cameras"].values():
            raise DemoImportError(f"{where}: {chosen['image']} is both image_topic and one of camera_topics")
        decoders: dict[str, Decoder] = {}
        if cfg.state_topics is not None:
            chosen["state"] = [_pick(topics, t, STATE_TYPES, "state", (), where) for t in cfg.state_topics]
            for t in chosen["state"]:
                decoders[t] = _state_decoder(t, topics[t], cfg, where)
        else:
            chosen["state"] = [_pick(topics, cfg.state_topic, STATE_TYPES, "state", ("state", "joint", "pose"), where)]
            decoders[chosen["state"][0]] = _legacy_decoder(chosen["state"][0], topics[chosen["state"][0]])
        if cfg.action_from == "topic":
            if cfg.action_topics is not None:
                picked = [_pick(topics, t, ACTION_TYPES, "action", (), where) for t in cfg.action_topics]
                chosen["action"] = _command_order(picked, topics, where)
                for t in chosen["action"]:
                    if t in decoders:
                        raise DemoImportError(f"{where}: {t} is listed as both a state and an action topic")
                    decoders[t] = _action_decoder(t, topics[t], cfg, where)
            else:
                chosen["action"] = [_pick(topics, cfg.action_topic, ACTION_TYPES, "action", ("action", "cmd", "command"), where,
                                          exclude=tuple(chosen["state"]))]
                if chosen["action"][0] in decoders:
                    raise DemoImportError(f"{where}: {chosen['action'][0]} is both the state and the action topic")
                decoders[chosen["action"][0]] = _legacy_decoder(chosen["action"][0], topics[chosen["action"][0]])
        if cfg.episode_topic:
            chosen["episode"] = _pick(topics, cfg.episode_topic, EPISODE_TYPES, "episode end", (), where)
        singles = {chosen["image"]: "image", **{t: "image" for t in chosen["cameras"].values()},
                   **({chosen["episode"]: "episode"} if "episode" in chosen else {})}
        raw: dict[str, list] = {k: [] for k in (*singles, *decoders)}
        conns = [c for c in reader.connections if c.topic in raw]
        counts = {k: 0 for k in raw}
        for conn, log_ns, data in reader.messages(connections=conns):
            topic = conn.topic
            i = counts[topic]
            counts[topic] += 1
            msg = reader.deserialize(data, conn.msgtype)
            t = _stamp_ns(msg, log_ns, cfg.stamps)
            here = f"{where} {topic} message {i}"
            if singles.get(topic) == "image":
                try:
                    img = compressed_msg_to_array(msg) if conn.msgtype.endswith("CompressedImage") else image_msg_to_array(msg)
                except ImageEncodingError as e:
                    raise DemoImportError(f"{here}: {e}") from e
                raw[topic].append((t, img))
            elif singles.get(topic) == "episode":
                raw[topic].append((t, bool(getattr(msg, "data", cfg.success))))
            else:
                vec = decoders[topic](msg, here)
                if vec is None:
                    continue
                if not np.isfinite(vec).all():
                    raise DemoImportError(f"{here} (t={t / 1e9:.3f} s): NaN/inf in {_short(conn.msgtype)}: {vec}")
                raw[topic].append((t, vec))
        storage = getattr(reader.readers[0], "storage", None)  # rosbags keeps metadata.yaml custom_data there
        custom = dict(getattr(getattr(storage, "metadata", None), "custom", None) or {})
    finally:
        reader.close()
    for topic, dec in decoders.items():
        if counts[topic]:
            dec.finish(where)
    for topic in (chosen["image"], *chosen["cameras"].values(), *decoders):
        if not raw[topic]:
            kind = ("image" if topic == chosen["image"] else "camera" if topic in chosen["cameras"].values()
                    else "state" if topic in chosen["state"] else "action")
            raise DemoImportError(f"{where}: topic {topic} ({kind}) has no messages")

    def stream(topic: str) -> Stream:
        items = sorted(raw[topic], key=lambda x: x[0])
        return Stream(np.array([t for t, _ in items], np.int64), [v for _, v in items], topics[topic])

    streams: dict = {"image": stream(chosen["image"]), "cameras": {key: stream(t) for key, t in chosen["cameras"].items()}}
    if "episode" in chosen:
        streams["episode"] = stream(chosen["episode"])
    for kind in ("state", "action"):
        streams[kind] = [stream(t) for t in chosen.get(kind, [])]
        for t, st in zip(chosen.get(kind, []), streams[kind]):
            dims = {len(v) for v in st.values}
            if len(dims) > 1:
                raise DemoImportError(f"{where}: {t} messages have different lengths {sorted(dims)}")
    for topic, st in ((chosen["image"], streams["image"]), *((chosen["cameras"][k], st) for k, st in streams["cameras"].items())):
        shapes = {v.shape for v in st.values}
        if len(shapes) > 1:
            raise DemoImportError(f"{where}: {topic} frames have different sizes {sorted(shapes)}")
    return streams, chosen, custom


def _episode_windows(frames: np.ndarray, streams: dict, cfg: RosbagImportConfig) -> list[tuple[int, int, int, int | None, bool]]:
    """[(first frame, end frame, start time, end time or None, success)] per episode."""
    if "episode" in streams and len(streams["episode"].times):
        bounds = streams["episode"].times
        flags = streams["episode"].values
        out, start_t = [], np.iinfo(np.int64).min
        for b, ok in zip(bounds, flags):
            lo, hi = np.searchsorted(frames, start_t, side="right"), np.searchsorted(frames, b, side="right")
            out.append((lo, hi, start_t, int(b), bool(ok)))
            start_t = int(b)
        lo = np.searchsorted(frames, start_t, side="right")
        out.append((lo, len(frames), start_t, None, cfg.success))
        return out
    if cfg.gap_s:
        cuts = np.flatnonzero(np.diff(frames) > cfg.gap_s * 1e9) + 1
        edges = [0, *cuts.tolist(), len(frames)]
        tol = int(round(cfg.tolerance_s * 1e9))  # a state or action up to tolerance_s before an episode's first frame belongs to it
        return [(a, b, int(frames[a]) - tol - 1 if a else np.iinfo(np.int64).min, None, cfg.success) for a, b in zip(edges[:-1], edges[1:])]
    return [(0, len(frames), np.iinfo(np.int64).min, None, cfg.success)]


def _nearest(times: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest time in sorted ``times`` for each query, and the distance (inf when ``times`` is empty)."""
    if len(times) == 0:
        return np.full(len(query), -1), np.full(len(query), np.inf)
    if len(times) == 1:
        return np.zeros(len(query), int), np.abs(times[0] - query).astype(np.float64)
    j = np.clip(np.searchsorted(times, query), 1, len(times) - 1)
    j = np.where(np.abs(times[j - 1] - query) <= np.abs(times[j] - query), j - 1, j)
    return j, np.abs(times[j] - query).astype(np.float64)


def _align_state(st: Stream, tf: np.ndarray, start_t: int, tol: int, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the index into ``st`` of its state (-1: none within ``tol``) and the time to the candidate (ns, inf if none)."""
    pos = np.flatnonzero(st.times > start_t)
    times = st.times[pos]
    if len(times) == 0:
        return np.full(len(tf), -1), np.full(len(tf), np.inf)
    if how == "nearest":
        j, gap = _nearest(times, tf)
    else:  # latest: the last state at or before the frame (what the ROS demo recorder pairs a frame with)
        j = np.searchsorted(times, tf, side="right") - 1
        gap = np.where(j >= 0, tf - times[np.maximum(j, 0)], np.inf)
    return np.where(gap <= tol, pos[np.maximum(j, 0)], -1), gap


def _align_command(st: Stream, tf: np.ndarray, nxt: np.ndarray, start_t: int, hold: int) -> np.ndarray:
    """Per frame: the index into ``st`` of the last command before the next frame, at most ``hold`` ns older than the frame (-1: none)."""
    pos = np.flatnonzero(st.times > start_t)
    times = st.times[pos]
    if len(times) == 0:
        return np.full(len(tf), -1)
    k = np.searchsorted(times, nxt, side="left") - 1  # last command strictly before the next frame
    valid = k >= 0
    stale = np.zeros(len(tf), bool)
    stale[valid] = tf[valid] - times[k[valid]] > hold
    return np.where(valid & ~stale, pos[np.maximum(k, 0)], -1)


def align_episode(streams: dict, chosen: dict, lo: int, hi: int, start_t: int, end_t: int | None, period_ns: int,
                  cfg: RosbagImportConfig, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, dict] | None:
    """Frames lo..hi-1 with their state and action (see module doc). Returns (image, state, action, dropped, {camera key:
    frames of the other cameras}) or None if too short.

    Every state and action topic is aligned on its own; a frame is kept once all of them have a message for it."""
    tf = streams["image"].times[lo:hi]
    tol = int(round(cfg.tolerance_s * 1e9))
    n = len(tf)
    states = [_align_state(st, tf, start_t, tol, cfg.state_align) for st in streams["state"]]
    actions = []
    if cfg.action_from == "topic":
        nxt = np.append(tf[1:], end_t if end_t is not None else tf[-1] + period_ns)
        gripper_hold = cfg.gripper_hold_s if cfg.gripper_hold_s is not None else cfg.tolerance_s
        holds = [cfg.tolerance_s] * len(streams["action"])
        if cfg.action_topics is not None:
            holds[-1] = gripper_hold  # [motion, gripper]: see _command_order
        actions = [(_align_command(st, tf, nxt, start_t, int(round(h * 1e9))), h) for st, h in zip(streams["action"], holds)]
    views = {}  # the other cameras: the frame of the nearest stamp within tol (-1: none), and how far it is
    for key, st in streams["cameras"].items():
        j, gap = _nearest(st.times, tf)
        views[key] = (np.where(gap <= tol, j, -1), gap)
    ok = np.ones(n, bool)
    for idx, _ in (*states, *views.values()):
        ok &= idx >= 0
    for idx, _ in actions:
        ok &= idx >= 0
    first = int(np.argmax(ok)) if ok.any() else n
    if not ok[first:].all():
        i = first + int(np.argmax(~ok[first:]))
        for key, (idx, gap) in views.items():
            if idx[i] < 0:
                raise DemoImportError(f"{where}: unsynchronised cameras: frame {lo + i} at {tf[i] / 1e9:.3f} s has no frame on "
                                      f"{chosen['cameras'][key]} within {cfg.tolerance_s} s (the nearest is {gap[i] / 1e9:.3f} s away)")
        for topic, (idx, gap) in zip(chosen["state"], states):
            if idx[i] < 0:
                raise DemoImportError(f"{where}: unsynchronised stamps: camera frame {lo + i} at {tf[i] / 1e9:.3f} s has no state on "
                                      f"{topic} within {cfg.tolerance_s} s ({cfg.state_align} one is {gap[i] / 1e9:.3f} s away)")
        for topic, (idx, hold) in zip(chosen.get("action", []), actions):
            if idx[i] < 0:
                raise DemoImportError(f"{where}: unsynchronised stamps: camera frame {lo + i} at {tf[i] / 1e9:.3f} s has no action on "
                                      f"{topic} issued before the next frame and at most {hold} s old")
    keep = np.arange(first, n)
    if cfg.action_from != "topic":
        keep = keep[:-1]  # the last frame has no next state
    if len(keep) < cfg.min_frames:
        return None

    def gather(streams_, aligned, rows):
        return np.stack([np.concatenate([st.values[a[0][i]] for st, a in zip(streams_, aligned)]) for i in rows]).astype(np.float32)

    image = np.stack([streams["image"].values[lo + i] for i in keep])
    cameras = {key: np.stack([streams["cameras"][key].values[idx[i]] for i in keep]) for key, (idx, _) in views.items()}
    state = gather(streams["state"], states, keep)
    if cfg.action_from == "topic":
        action = gather(streams["action"], actions, keep)
    else:
        nxt_state = gather(streams["state"], states, keep + 1)
        action = nxt_state - state if cfg.action_from == "next_state_delta" else nxt_state
    return image, state, action, first, cameras


def bag_episodes(path: Path, cfg: RosbagImportConfig, info: dict) -> Iterator[Episode]:
    streams, chosen, custom = read_bag(path, cfg)
    frames = streams["image"].times
    period = int(np.median(np.diff(frames))) if len(frames) > 1 else int(1e9 / (cfg.fps or 10.0))
    info.setdefault("fps", cfg.fps or (round(1e9 / period, 3) if period > 0 else 10.0))
    listed = {"state": cfg.state_topics is not None, "action": cfg.action_topics is not None}
    info.setdefault("topics", {k: v if isinstance(v, (str, dict)) or listed.get(k) else v[0] for k, v in chosen.items() if v})  # one name for state_topic
    info.setdefault("custom", custom)
    if cfg.action_topics is not None:  # the demo recorder's names for what a twist or a joint trajectory policy outputs
        info.setdefault("command_space", "joint_delta" if streams["action"][0].msgtype == "trajectory_msgs/msg/JointTrajectory" else "ee_delta")
    seeds = json.loads(custom[SEEDS_KEY]) if SEEDS_KEY in custom else []
    for e, (lo, hi, start_t, end_t, success) in enumerate(_episode_windows(frames, streams, cfg)):
        if hi - lo == 0:
            continue
        where = f"{path} episode {e}"
        got = align_episode(streams, chosen, lo, hi, start_t, end_t, period, cfg, where)
        if got is None:
            log.info("%s: %d frames, fewer than min_frames=%d; skipped", where, hi - lo, cfg.min_frames)
            continue
        image, state, action, dropped, cameras = got
        if dropped:
            log.info("%s: dropped %d leading frames without a state, action or other camera's frame yet", where, dropped)
        yield Episode(image, state, action, None, success, seed=seeds[e] if e < len(seeds) else None, cameras=cameras or None)


def import_rosbag2(cfg: RosbagImportConfig) -> dict:
    """rosbag2 recording(s) -> demo folder ``cfg.out_dir``; returns the import summary."""
    bags = find_bags(cfg.src)
    info: dict = {}

    def files(b: Path) -> list[Path]:
        return [b] if b.is_file() else [p for p in b.rglob("*") if p.is_file()]

    units = [Unit(content_key(files(b), b.parent if b.is_file() else b), str(b), lambda b=b: bag_episodes(b, cfg, info)) for b in bags]

    def make_meta(ep: Episode) -> DemoMeta:
        if META_KEY in info.get("custom", {}):
            return DemoMeta.from_json(json.loads(info["custom"][META_KEY]))
        topics = info["topics"]
        extra = {"topics": topics, "tolerance_s": cfg.tolerance_s, "stamps": cfg.stamps}
        if cfg.state_topics is not None or cfg.action_topics is not None:  # what the policy node needs set the same way
            opts = cfg.options()
            extra["ros_conventions"] = {k: opts[k] for k in (*STATE_TOPICS_KEYS, *ACTION_TOPICS_KEYS) if k in opts and "topics" not in k}
        space = cfg.action_space or ("state" if cfg.action_from == "next_state" else "state_delta" if cfg.action_from == "next_state_delta"
                                     else info.get("command_space", "ros"))
        return DemoMeta(source="rosbag2", task=cfg.task or Path(cfg.src).name, image_size=tuple(ep.image.shape[1:3]),
                        state_dim=ep.state.shape[1], action_dim=ep.action.shape[1], fps=float(info["fps"]),
                        action_space=space, extra=extra)

    return run_import(units, cfg.out_dir, "rosbag2", cfg.options(), make_meta, cfg.image_size, cfg.skip_bad)


# ---------------------------------------------------------------- export
def export_rosbag2(demos: str | Path, out: str | Path, storage: str = "mcap", image_topic: str = "/camera/image_raw",
                   state_topic: str = "/robot/state", action_topic: str = "/toto/action", episode_topic: str = "/sim/episode_done",
                   start_time_s: float = 1.7e9, episode_gap_s: float = 1.0) -> Path:
    """A demo folder -> a rosbag2 at ``out`` (written under a hidden name, then renamed into place).

    Every other camera of the demos (``<name>_image``) goes to ``/camera/<name>/image_raw``, stamped as the image (import
    them back with ``camera_topics``). Step t of an episode starting at time T0 is state then image (stamped) at T0 + t/fps and the
    action at T0 + (t + 1/2)/fps; the episode's end is ``episode_topic`` (Bool, data = success) a
    quarter frame after its last action, and the next episode starts ``episode_gap_s`` later."""
    import os
    import shutil

    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from tqdm.auto import tqdm

    from toto_robot.utils.io import temp_path

    if storage not in ("mcap", "sqlite3"):
        raise ValueError(f"storage must be mcap or sqlite3, got {storage!r}")
    ds = DemoDataset(demos)
    if len(ds) == 0:
        raise DemoImportError(f"{demos}: no episodes to export")
    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    Image, Header, Time = T["sensor_msgs/msg/Image"], T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    F32, Layout, Dim, Bool = T["std_msgs/msg/Float32MultiArray"], T["std_msgs/msg/MultiArrayLayout"], T["std_msgs/msg/MultiArrayDimension"], T["std_msgs/msg/Bool"]

    def arr_msg(x):
        x = np.asarray(x, np.float32).reshape(-1)
        return ts.serialize_cdr(F32(layout=Layout(dim=[Dim(label="x", size=x.size, stride=x.size)], data_offset=0), data=x), F32.__msgtype__)

    out = Path(out)
    if out.exists():
        raise DemoImportError(f"{out} exists; rosbag2 export writes a new bag")
    stage = temp_path(out, directory=True)
    bag = stage / out.name
    period = int(round(1e9 / ds.meta.fps))
    t0 = int(start_time_s * 1e9)
    seeds, languages = [], 0
    try:
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        with Writer(bag, version=9, storage_plugin=plugin) as w:
            w.set_custom_data(META_KEY, json.dumps(asdict(ds.meta)))
            c_img = w.add_connection(image_topic, Image.__msgtype__, typestore=ts)
            c_state = w.add_connection(state_topic, F32.__msgtype__, typestore=ts)
            c_act = w.add_connection(action_topic, F32.__msgtype__, typestore=ts)
            c_done = w.add_connection(episode_topic, Bool.__msgtype__, typestore=ts)
            extra = camera_keys(ds[0])[1:]
            c_cams = {key: w.add_connection(f"/camera/{key[:-len('_image')]}/image_raw", Image.__msgtype__, typestore=ts) for key in extra}
            for i in tqdm(range(len(ds)), desc="export rosbag2", unit="ep"):
                ep = ds[i]
                seeds.append(int(ep[SEED]) if SEED in ep else None)
                languages += LANGUAGE in ep
                H, W = ep[OBS_IMAGE].shape[1:3]
                for t in range(len(ep[OBS_IMAGE])):
                    now = t0 + t * period
                    w.write(c_state, now, arr_msg(ep[OBS_STATE][t]))
                    stamp = Time(sec=(now + 1) // 1_000_000_000, nanosec=(now + 1) % 1_000_000_000)
                    for key, conn in c_cams.items():  # the other views first, as the sim bridge publishes them
                        h, wd = ep[key].shape[1:3]
                        view = Image(header=Header(stamp=stamp, frame_id=key[:-len("_image")]), height=h, width=wd, encoding="rgb8",
                                     is_bigendian=0, step=wd * 3, data=np.ascontiguousarray(ep[key][t]).reshape(-1))
                        w.write(conn, now + 1, ts.serialize_cdr(view, Image.__msgtype__))
                    img = Image(header=Header(stamp=stamp, frame_id="camera"), height=H, width=W, encoding="rgb8", is_bigendian=0,
                                step=W * 3, data=np.ascontiguousarray(ep[OBS_IMAGE][t]).reshape(-1))
                    w.write(c_img, now + 1, ts.serialize_cdr(img, Image.__msgtype__))
                    w.write(c_act, now + period // 2, arr_msg(ep[ACTION][t]))
                end = t0 + (len(ep[OBS_IMAGE]) - 1) * period + (3 * period) // 4
                w.write(c_done, end, ts.serialize_cdr(Bool(data=bool(ep[SUCCESS])), Bool.__msgtype__))
                t0 = end + int(episode_gap_s * 1e9)
            w.set_custom_data(SEEDS_KEY, json.dumps(seeds))
        os.replace(bag, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if languages:
        log.warning("%d episodes have a language instruction; a rosbag2 export does not carry them", languages)
    return out
