"""rosbag2 import from several state and action topics (``state_topics`` / ``action_topics``), as a real arm under
MoveIt Servo records them: JointState in the driver's joint order at 25 Hz, an end-effector PoseStamped, TwistStamped
commands and a Float64MultiArray gripper command. The state and action must come out in the layout and scaling of
the policy node and demo recorder (``toto_robot.ros.control``), so the node's own commands import back into the
actions it was given."""
import logging
import sys
import types

import numpy as np
import pytest

from toto_robot.data.demos import DemoDataset
from toto_robot.data.formats.common import DemoImportError
from toto_robot.data.formats.rosbag2 import RosbagImportConfig, import_rosbag2
from toto_robot.ros import control
from toto_robot.utils.config import ConfigError

ARM = ["j1", "j2", "j3"]  # the policy's joint order
FINGERS = ["finger"]
DRIVER_ORDERS = (["j3", "finger", "j1", "cam_tilt", "j2"], ["finger", "j2", "cam_tilt", "j3", "j1"])  # the driver's (changes mid-bag)
TOPICS = dict(state_topics=["/joint_states", "/tcp_pose"], action_topics=["/servo_node/delta_twist_cmds", "/gripper_controller/commands"],
              joint_names=ARM, gripper_joint_names=FINGERS)
LIN, ANG, OPEN, CLOSED = 0.25, 0.8, 0.08, 0.01  # speeds and gripper range of this arm (not the defaults)
SPEEDS = dict(max_linear_speed=LIN, max_angular_speed=ANG, gripper_open_position=OPEN, gripper_closed_position=CLOSED)


def write_arm_bag(path, frames, frame_t, joints, joint_t, poses, pose_t, twists, twist_t, grippers, gripper_t):
    """A rosbag2 (MCAP) as a MoveIt Servo arm records it. ``joints`` [N, 5, 3]: position, velocity, effort per joint of
    ``DRIVER_ORDERS`` (the first half of the messages in the first order); ``poses`` [N, 7] xyz + quaternion;
    ``twists`` [N, 6] m/s and rad/s; ``grippers`` [N] positions (Float64MultiArray has no header: stamped by log time)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    Header, Time, V3 = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"], T["geometry_msgs/msg/Vector3"]
    Im, J, PS, TS = (T[f"{m}"] for m in ("sensor_msgs/msg/Image", "sensor_msgs/msg/JointState", "geometry_msgs/msg/PoseStamped",
                                          "geometry_msgs/msg/TwistStamped"))
    F64, L = T["std_msgs/msg/Float64MultiArray"], T["std_msgs/msg/MultiArrayLayout"]

    def header(t):
        ns = int(round(t * 1e9))
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="fr3_link0")

    def write(conn, t, msg):
        w.write(conn, int(round(t * 1e9)), ts.serialize_cdr(msg, msg.__msgtype__))

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c_img = w.add_connection("/camera/color/image_raw", Im.__msgtype__, typestore=ts)
        c_js = w.add_connection("/joint_states", J.__msgtype__, typestore=ts)
        c_pose = w.add_connection("/tcp_pose", PS.__msgtype__, typestore=ts)
        c_tw = w.add_connection("/servo_node/delta_twist_cmds", TS.__msgtype__, typestore=ts)
        c_gr = w.add_connection("/gripper_controller/commands", F64.__msgtype__, typestore=ts)
        for f, t in zip(frames, frame_t):
            H, W = f.shape[:2]
            write(c_img, t, Im(header=header(t), height=H, width=W, encoding="rgb8", is_bigendian=0, step=W * 3, data=f.reshape(-1)))
        for k, (js, t) in enumerate(zip(joints, joint_t)):
            write(c_js, t, J(header=header(t), name=DRIVER_ORDERS[k >= len(joints) // 2], position=js[:, 0].copy(), velocity=js[:, 1].copy(),
                             effort=js[:, 2].copy()))
        Pose, P, Q = T["geometry_msgs/msg/Pose"], T["geometry_msgs/msg/Point"], T["geometry_msgs/msg/Quaternion"]
        for p, t in zip(poses, pose_t):
            write(c_pose, t, PS(header=header(t), pose=Pose(position=P(x=p[0], y=p[1], z=p[2]), orientation=Q(x=p[3], y=p[4], z=p[5], w=p[6]))))
        Tw = T["geometry_msgs/msg/Twist"]
        for v, t in zip(twists, twist_t):
            write(c_tw, t, TS(header=header(t), twist=Tw(linear=V3(x=v[0], y=v[1], z=v[2]), angular=V3(x=v[3], y=v[4], z=v[5]))))
        for g, t in zip(grippers, gripper_t):
            write(c_gr, t, F64(layout=L(dim=[], data_offset=0), data=np.array([g], np.float64)))
    return path


def arm_recording(rng, n_frames=15, fps=10.0, t0=100.0):
    """Camera at ``fps``, joint states and pose at 25 Hz from before the first frame, a twist and a gripper command
    after each frame (the command computed from it)."""
    frame_t = t0 + np.arange(n_frames) / fps
    joint_t = t0 - 0.013 + np.arange(int(n_frames / fps * 25) + 3) * 0.04
    pose_t = joint_t + 0.002
    rec = dict(frames=rng.integers(0, 256, (n_frames, 6, 8, 3), dtype=np.uint8), frame_t=frame_t,
               joints=rng.normal(size=(len(joint_t), 5, 3)), joint_t=joint_t,
               poses=np.c_[rng.normal(size=(len(pose_t), 3)), rng.normal(size=(len(pose_t), 4))], pose_t=pose_t,
               twists=rng.uniform(-1, 1, (n_frames, 6)) * np.repeat([LIN, ANG], 3), twist_t=frame_t + 0.03,
               grippers=rng.uniform(CLOSED, OPEN, n_frames), gripper_t=frame_t + 0.02)
    return rec


def expected(rec, pose_quat=False, angular=False):
    """State and action per frame computed from what was written: the last joint state / pose at or before the frame,
    joints looked up by name; the twist and gripper command issued after the frame, scaled as the recorder scales them."""
    state, action = [], []
    for i, t in enumerate(rec["frame_t"]):
        k = np.searchsorted(rec["joint_t"], t, side="right") - 1
        order = DRIVER_ORDERS[int(k >= len(rec["joint_t"]) // 2)]
        js = {name: rec["joints"][k, c] for c, name in enumerate(order)}
        p = np.searchsorted(rec["pose_t"], t, side="right") - 1
        pose = rec["poses"][p, :7 if pose_quat else 3]
        state.append(np.r_[[js[j][0] for j in ARM], [js[j][1] for j in ARM], [js[j][0] for j in FINGERS]].astype(np.float32).tolist()
                     + pose.astype(np.float32).tolist())
        tw = rec["twists"][i]
        motion = np.r_[tw[:3] / LIN, tw[3:] / ANG] if angular else tw[:3] / LIN
        g = 2 * (rec["grippers"][i] - OPEN) / (CLOSED - OPEN) - 1
        action.append(np.r_[motion.astype(np.float32), np.float32(g)])
    return np.array(state, np.float32), np.array(action, np.float32)


@pytest.mark.parametrize("pose_quat,angular", [(False, False), (True, True)])
def test_joint_states_by_name_pose_twist_and_gripper_from_several_topics(tmp_path, pose_quat, angular):
    rec = arm_recording(np.random.default_rng(0))
    bag = write_arm_bag(tmp_path / "bag", **rec)
    summary = import_rosbag2(RosbagImportConfig(src=str(bag), out_dir=str(tmp_path / "demos"), task="real_pick", pose_quat=pose_quat,
                                                twist_angular=angular, **TOPICS, **SPEEDS))
    ds = DemoDataset(tmp_path / "demos")
    assert summary["new_episodes"] == 1 and len(ds) == 1
    ep = ds[0]
    state, action = expected(rec, pose_quat, angular)
    assert ep["state"].shape == (15, 2 * 3 + 1 + (7 if pose_quat else 3)) and ep["action"].shape == (15, 7 if angular else 4)
    np.testing.assert_array_equal(ep["image"], rec["frames"])
    np.testing.assert_array_equal(ep["state"], state)  # [q(j1..j3), dq(j1..j3), q(finger), pose xyz(+quat)], driver order undone
    np.testing.assert_array_equal(ep["action"], action)  # [twist / speeds, gripper in -1..1]
    assert np.abs(action).max() <= 1 and np.abs(action).max() > 0.5
    meta = ds.meta
    assert meta.action_space == "ee_delta" and meta.state_dim == state.shape[1] and meta.action_dim == action.shape[1]
    assert meta.extra["topics"]["state"] == ["/joint_states", "/tcp_pose"]
    assert meta.extra["topics"]["action"] == ["/servo_node/delta_twist_cmds", "/gripper_controller/commands"]
    conv = meta.extra["ros_conventions"]
    assert conv["joint_names"] == ARM and conv["max_linear_speed"] == LIN and conv["twist_angular"] is angular


def test_action_topics_in_any_order_and_nearest_alignment_and_config_from_the_command_line(tmp_path):
    rec = arm_recording(np.random.default_rng(1))
    bag = write_arm_bag(tmp_path / "bag", **rec)
    from toto_robot.cli import main

    argv = sys.argv
    try:  # the documented command (docs/formats.md)
        assert main(["import-demos", "format=rosbag2", f"src={bag}", f"out_dir={tmp_path / 'cli'}", f"hydra.run.dir={tmp_path / 'h'}",
                     "format.read.state_topics=[/joint_states,/tcp_pose]", "format.read.joint_names=[j1,j2,j3]",
                     "format.read.gripper_joint_names=[finger]",
                     "format.read.action_topics=[/gripper_controller/commands,/servo_node/delta_twist_cmds]",  # gripper listed first
                     f"format.read.max_linear_speed={LIN}", f"format.read.gripper_open_position={OPEN}",
                     f"format.read.gripper_closed_position={CLOSED}"]) == 0
    finally:
        sys.argv = argv
    state, action = expected(rec)
    ep = DemoDataset(tmp_path / "cli")[0]
    np.testing.assert_array_equal(ep["state"], state)
    np.testing.assert_array_equal(ep["action"], action)  # still [motion, gripper]
    # nearest in time: frame i's joint state is the 25 Hz sample closest to it, either side
    import_rosbag2(RosbagImportConfig(src=str(bag), out_dir=str(tmp_path / "near"), state_align="nearest", **TOPICS, **SPEEDS))
    ep = DemoDataset(tmp_path / "near")[0]
    k = np.abs(rec["joint_t"][None] - rec["frame_t"][:, None]).argmin(1)
    q = [{n: rec["joints"][kk, c, 0] for c, n in enumerate(DRIVER_ORDERS[int(kk >= len(rec["joint_t"]) // 2)])} for kk in k]
    np.testing.assert_array_equal(ep["state"][:, :3], np.array([[qq[j] for j in ARM] for qq in q], np.float32))


def _stand_in_ros_messages(monkeypatch):
    """The policy node's conversions build rclpy messages; without a ROS install, plain classes with the same fields
    and default construction take their place (the numbers all come from ``toto_robot.ros.control``)."""
    try:
        import geometry_msgs.msg  # noqa: F401
        import std_msgs.msg  # noqa: F401
        return
    except ImportError:
        pass
    from types import SimpleNamespace as NS

    class TwistStamped:
        def __init__(self):
            self.header = NS(stamp=NS(sec=0, nanosec=0), frame_id="")
            self.twist = NS(linear=NS(x=0.0, y=0.0, z=0.0), angular=NS(x=0.0, y=0.0, z=0.0))

    class Float64MultiArray:
        def __init__(self, data=()):
            self.data = list(data)

    for pkg, cls in (("geometry_msgs", TwistStamped), ("std_msgs", Float64MultiArray)):
        mod, msg = types.ModuleType(pkg), types.ModuleType(f"{pkg}.msg")
        setattr(msg, cls.__name__, cls)
        mod.msg = msg
        monkeypatch.setitem(sys.modules, pkg, mod)
        monkeypatch.setitem(sys.modules, f"{pkg}.msg", msg)


@pytest.mark.parametrize("motion", [3, 6])
def test_the_policy_nodes_own_commands_import_back_into_its_actions(tmp_path, monkeypatch, motion):
    """Actions -> TwistStamped + gripper command with the policy node's functions (its publish_action) -> a bag ->
    import with the same parameters -> the same float32 actions, bit for bit (4-d ee_delta and 7-d with rotation rates)."""
    _stand_in_ros_messages(monkeypatch)
    rng = np.random.default_rng(2)
    n = 12
    actions = rng.uniform(-1, 1, (n, motion + 1)).astype(np.float32)
    actions[0, :] = 1.0  # the extremes: full speed, gripper closed / open
    actions[1, :] = -1.0
    twists, grippers = [], []
    for a in actions:
        msg = control.twist_from_action(a, LIN, ANG, "fr3_link0")
        t = msg.twist
        twists.append([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z])
        grippers.append(float(control.gripper_msg(float(a[-1]), OPEN, CLOSED).data[0]))
    rec = arm_recording(np.random.default_rng(3), n_frames=n)
    rec.update(twists=np.array(twists), grippers=np.array(grippers))
    bag = write_arm_bag(tmp_path / "bag", **rec)
    import_rosbag2(RosbagImportConfig(src=str(bag), out_dir=str(tmp_path / "demos"), twist_angular=motion == 6, **TOPICS, **SPEEDS))
    ds = DemoDataset(tmp_path / "demos")
    np.testing.assert_array_equal(ds[0]["action"], actions)
    assert ds.meta.action_space == "ee_delta" and ds.meta.action_dim == motion + 1


def test_several_topics_name_what_is_wrong(tmp_path, caplog):
    rec = arm_recording(np.random.default_rng(4))
    bag = write_arm_bag(tmp_path / "bag", **rec)

    def run(out, **kw):
        return import_rosbag2(RosbagImportConfig(src=str(bag), out_dir=str(tmp_path / out), **{**TOPICS, **SPEEDS, **kw}))

    with pytest.raises(DemoImportError, match=r"/joint_states never carries joint 'j9'; names present: \['j3', 'finger', 'j1', 'cam_tilt', 'j2'\]"):
        run("o1", joint_names=["j1", "j9", "j3"])
    with pytest.raises(DemoImportError, match="state topic /joint_states is a JointState: set format.read.joint_names"):
        run("o2", joint_names=None, gripper_joint_names=None)
    with pytest.raises(DemoImportError, match=r"action_topics must be one motion command .* got "
                                              r"/servo_node/delta_twist_cmds \(geometry_msgs/TwistStamped\)"):
        run("o3", action_topics=["/servo_node/delta_twist_cmds"])
    with pytest.raises(DemoImportError, match=r"no topic /gripper/cmd for the action; topics: "):
        run("o4", action_topics=["/servo_node/delta_twist_cmds", "/gripper/cmd"])
    with pytest.raises(ConfigError, match="state_topic .* or state_topics"):
        run("o5", state_topic="/joint_states")
    with pytest.raises(ConfigError, match="shape the state of state_topics"):
        RosbagImportConfig(src=str(bag), out_dir=str(tmp_path / "o6"), state_topic="/joint_states", joint_names=ARM)
    with pytest.raises(ConfigError, match="gripper_hold_s holds the gripper command of action_topics"):
        RosbagImportConfig(src=str(bag), out_dir=str(tmp_path / "o6"), action_topic="/servo_node/delta_twist_cmds", gripper_hold_s=1.0)
    with pytest.raises(ConfigError, match="gripper_open_position and gripper_closed_position are equal"):
        run("o7", gripper_closed_position=OPEN)
    # a gripper commanded only on change: its one command is stale for later frames unless gripper_hold_s says it holds
    sparse = dict(rec, grippers=rec["grippers"][:1], gripper_t=rec["gripper_t"][:1])
    sparse_bag = write_arm_bag(tmp_path / "sparse", **sparse)
    with pytest.raises(DemoImportError, match=r"camera frame 1 at 100.100 s has no action on /gripper_controller/commands issued before "
                                              r"the next frame and at most 0.05 s old"):
        import_rosbag2(RosbagImportConfig(src=str(sparse_bag), out_dir=str(tmp_path / "o8"), **TOPICS, **SPEEDS))
    import_rosbag2(RosbagImportConfig(src=str(sparse_bag), out_dir=str(tmp_path / "held"), gripper_hold_s=10.0, **TOPICS, **SPEEDS))
    ep = DemoDataset(tmp_path / "held")[0]
    np.testing.assert_array_equal(ep["action"][:, -1], np.full(15, expected(rec)[1][0, -1]))
    # commands beyond the speeds are clipped, as the recorder does, and said; angular rates left out are said too
    with caplog.at_level(logging.WARNING, logger="toto_robot.data.formats.rosbag2"):
        run("slow", max_linear_speed=LIN / 2)
    assert "exceed max_linear_speed=0.125 and were clipped" in caplog.text
    assert "carry angular rates, which twist_angular=false leaves out" in caplog.text
    assert np.abs(DemoDataset(tmp_path / "slow")[0]["action"]).max() == 1.0
