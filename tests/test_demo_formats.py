"""Demonstrations in other formats: TFRecord framing and tf.train.Example without TensorFlow, RLDS, LeRobot v3
and rosbag2 round trips from simulated episodes, behaviour cloning straight from each, named errors for bad
recordings, resumable imports, and a simulated episode recorded through the ROS nodes into a bag."""
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from toto_robot.data.demos import DemoDataset, DemoMeta
from toto_robot.data.formats import open_demos
from toto_robot.data.formats.common import DemoImportError
from toto_robot.data.formats.lerobot import LeRobotDataset, LeRobotImportConfig, export_lerobot, import_lerobot, open_lerobot
from toto_robot.data.formats.rlds import RLDSImportConfig, export_rlds, import_rlds
from toto_robot.data.formats.rosbag2 import RosbagImportConfig, export_rosbag2, import_rosbag2
from toto_robot.data.formats.tfrecord import TFRecordError, parse_example, read_records, serialize_example, write_records
from toto_robot.policies import load_policy
from toto_robot.policies.bc import BCConfig, train_bc
from toto_robot.sim_envs.collect import CollectConfig, collect

pytestmark = pytest.mark.xdist_group("demo_formats")  # one worker collects the shared episodes once
KEYS = ("image", "state", "action", "reward", "success", "seed")


@pytest.fixture(scope="module")
def sim_demos(tmp_path_factory):
    """Three scripted-expert episodes of the pick task (32 px camera), the source of every round trip."""
    out = tmp_path_factory.mktemp("demos") / "franka_pick"
    collect(CollectConfig(task="franka_pick", episodes=3, out_dir=str(out), image_size=32, randomization={}, videos=False, preview_episodes=0))
    return out


def assert_same(a: dict, b: dict, keys=KEYS, image_exact=True):
    for k in keys:
        if k == "image" and not image_exact:
            continue
        assert k in b, f"{k} lost"
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert a[k].dtype == b[k].dtype, k


def bc_acts(demos, tmp_path):
    policy_dir = train_bc(BCConfig(demos=str(demos), out_dir=str(tmp_path / "bc"), encoder={"name": "random", "pooling": "average"},
                                   epochs=2, val_fraction=0.0))
    ds = open_demos(demos)
    ep = ds[0]
    action = load_policy(policy_dir).act({"image": ep["image"][0], "state": ep["state"][0]})
    assert action.shape == (ds.meta.action_dim,) and np.isfinite(action).all()
    return action


# ---------------------------------------------------------------- TFRecord / tf.train.Example
def test_tf_example_wire_format_and_tfrecord_framing_are_checked(tmp_path):
    # Example{features{feature{"a": Feature{int64_list{value: [1]}}}}}, encoded by hand from example.proto's field numbers
    hand = bytes([0x0A, 0x0C, 0x0A, 0x0A, 0x0A, 0x01, 0x61, 0x12, 0x05, 0x1A, 0x03, 0x0A, 0x01, 0x01])
    assert {k: v.tolist() for k, v in parse_example(hand).items()} == {"a": [1]}
    rec = serialize_example({"f": np.array([0.5, -2.0], np.float32), "b": [b"png", b"x"], "i": np.array([True, False])})
    got = parse_example(rec)
    assert got["f"].dtype == np.float32 and got["f"].tolist() == [0.5, -2.0] and got["b"] == [b"png", b"x"] and got["i"].tolist() == [1, 0]
    path = tmp_path / "x.tfrecord"
    with open(path, "wb") as f:
        write_records(f, iter([rec, b"second"]))
    raw = path.read_bytes()
    assert int.from_bytes(raw[:8], "little") == len(rec)  # uint64 little-endian length first
    assert list(read_records(path)) == [rec, b"second"]
    with gzip.open(tmp_path / "x.tfrecord.gz", "wb") as f:
        f.write(raw)
    assert list(read_records(tmp_path / "x.tfrecord.gz")) == [rec, b"second"]
    bad = bytearray(raw)
    bad[20] ^= 0xFF  # a flipped bit inside the first record's data
    (tmp_path / "bad.tfrecord").write_bytes(bytes(bad))
    with pytest.raises(TFRecordError, match="data checksum mismatch .* at byte 0"):
        list(read_records(tmp_path / "bad.tfrecord"))
    (tmp_path / "short.tfrecord").write_bytes(raw[:-3])
    with pytest.raises(TFRecordError, match="truncated"):
        list(read_records(tmp_path / "short.tfrecord"))


# ---------------------------------------------------------------- RLDS
def test_rlds_round_trip_is_bit_exact_resumable_and_bc_learns_from_the_folder(sim_demos, tmp_path):
    rlds = export_rlds(sim_demos, tmp_path / "rlds" / "franka_pick" / "1.0.0", episodes_per_shard=2)
    shards = sorted(p.name for p in rlds.iterdir() if ".tfrecord" in p.name)
    assert shards == ["franka_pick-train.tfrecord-00000-of-00002", "franka_pick-train.tfrecord-00001-of-00002"]
    features = json.loads((rlds / "features.json").read_text())
    steps = features["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"]
    assert steps["observation"]["featuresDict"]["features"]["image"]["image"]["shape"]["dimensions"] == ["32", "32", "3"]
    summary = import_rlds(RLDSImportConfig(src=str(tmp_path / "rlds"), out_dir=str(tmp_path / "back")))
    assert summary["new_episodes"] == 3 and summary["units"] == 2
    src, back = DemoDataset(sim_demos), DemoDataset(tmp_path / "back")
    assert back.meta == src.meta
    for i in range(len(src)):
        assert_same(src[i], back[i])
    again = import_rlds(RLDSImportConfig(src=str(rlds), out_dir=str(tmp_path / "back")))
    assert again["units_skipped_already_imported"] == 2 and again["new_episodes"] == 0 and len(DemoDataset(tmp_path / "back")) == 3
    with pytest.raises(DemoImportError, match="other options .*state_keys"):
        import_rlds(RLDSImportConfig(src=str(rlds), out_dir=str(tmp_path / "back"), state_keys=["observation/state"]))
    with pytest.raises(DemoImportError, match="no feature 'steps/observation/depth'.*features:"):
        import_rlds(RLDSImportConfig(src=str(rlds), out_dir=str(tmp_path / "x"), image_key="observation/depth"))
    bc_acts(rlds, tmp_path)  # straight from the RLDS folder


def test_rlds_reader_takes_keys_by_name_and_names_corrupt_shards(tmp_path):
    """An RT-1-style dataset: an action dict listed part by part, a differently named camera, a language key."""
    from toto_robot.data.formats.rlds import rlds_features

    ds_dir = tmp_path / "rt1" / "0.1.0"
    ds_dir.mkdir(parents=True)
    meta = DemoMeta(source="x", task="t", image_size=(8, 8), state_dim=3, action_dim=4)
    tree = rlds_features(meta, wrist=False, seeds=False)
    step = tree["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"]
    step["observation"]["featuresDict"]["features"]["rgb"] = step["observation"]["featuresDict"]["features"].pop("image")
    step["action"] = {"featuresDict": {"features": {"world_vector": {"tensor": {"shape": {"dimensions": ["3"]}, "dtype": "float32"}},
                                                    "gripper": {"tensor": {"shape": {"dimensions": ["1"]}, "dtype": "float32"}}}}}
    (ds_dir / "features.json").write_text(json.dumps(tree))
    from PIL import Image

    T = 4
    frames = np.random.default_rng(0).integers(0, 256, (T, 8, 8, 3), dtype=np.uint8)
    pngs = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    wv, gr, st = np.arange(T * 3, dtype=np.float32).reshape(T, 3), np.ones((T, 1), np.float32), np.zeros((T, 3), np.float32)
    rec = serialize_example({"steps/observation/rgb": pngs, "steps/observation/state": st, "steps/action/world_vector": wv,
                             "steps/action/gripper": gr, "steps/is_terminal": np.arange(T) == T - 1,
                             "steps/language_instruction": ["pick the can"] * T})
    with open(ds_dir / "rt1-train.tfrecord-00000-of-00001", "wb") as f:
        write_records(f, iter([rec]))
    with pytest.raises(DemoImportError, match="steps/action is a dict; list its parts .*steps/action/gripper"):
        import_rlds(RLDSImportConfig(src=str(tmp_path / "rt1"), out_dir=str(tmp_path / "a")))
    summary = import_rlds(RLDSImportConfig(src=str(tmp_path / "rt1"), out_dir=str(tmp_path / "a"),
                                           action_keys=["action/world_vector", "action/gripper"], task="rt1"))
    ep = DemoDataset(tmp_path / "a")[0]
    assert summary["new_episodes"] == 1
    np.testing.assert_array_equal(ep["image"], frames)
    np.testing.assert_array_equal(ep["action"], np.concatenate([wv, gr], 1))
    assert bool(ep["success"]) and str(ep["language"]) == "pick the can"
    shard = ds_dir / "rt1-train.tfrecord-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DemoImportError, match="rt1-train.tfrecord-00000-of-00001: truncated record at byte 0"):
        import_rlds(RLDSImportConfig(src=str(tmp_path / "rt1"), out_dir=str(tmp_path / "b"), action_keys=["action/world_vector"]))


# ---------------------------------------------------------------- LeRobot v3
def test_lerobot_v3_export_follows_the_schema_and_round_trips(sim_demos, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = export_lerobot(sim_demos, tmp_path / "lerobot")
    info = json.loads((out / "meta" / "info.json").read_text())
    src = DemoDataset(sim_demos)
    n = sum(len(ep["image"]) for ep in src)
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20 and info["total_episodes"] == 3 and info["total_frames"] == n
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    cam = "observation.images.agentview"
    assert info["features"][cam]["dtype"] == "video" and info["features"][cam]["shape"] == [32, 32, 3]
    assert {"timestamp", "frame_index", "episode_index", "index", "task_index", "observation.state", "action"} <= set(info["features"])
    data = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    state_type = data.schema.field("observation.state").type
    assert pa.types.is_fixed_size_list(state_type) and state_type.list_size == src.meta.state_dim and state_type.value_type == pa.float32()
    assert data.column("index").to_pylist() == list(range(n))
    assert json.loads(data.schema.metadata[b"huggingface"])["info"]["features"]["action"]["length"] == src.meta.action_dim
    tasks = pq.read_table(out / "meta" / "tasks.parquet")
    assert tasks.column("task").to_pylist() == ["franka_pick"] and json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    eps = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    lengths = [len(ep["image"]) for ep in src]
    assert [e["length"] for e in eps] == lengths and [e["tasks"] for e in eps] == [["franka_pick"]] * 3
    assert [e["dataset_to_index"] - e["dataset_from_index"] for e in eps] == lengths
    assert eps[1][f"videos/{cam}/from_timestamp"] == pytest.approx(lengths[0] / 20)
    stats = json.loads((out / "meta" / "stats.json").read_text())
    np.testing.assert_allclose(stats["action"]["mean"], np.concatenate([ep["action"] for ep in src]).mean(0), rtol=1e-6, atol=1e-7)
    assert np.asarray(stats[cam]["mean"]).shape == (3, 1, 1) and stats["observation.state"]["count"] == [n]

    back = LeRobotDataset(out)
    assert back.meta == src.meta and len(back) == 3
    errors = []
    for i in range(3):
        a, b = src[i], back[i]
        assert_same(a, b, image_exact=False)
        errors.append(np.abs(a["image"].astype(int) - b["image"].astype(int)))
    err = np.concatenate([e.ravel() for e in errors])
    # H.264 crf 18 yuv420p on these 32 px frames: measured mean 3.1, 99th percentile 20 (of 255; benchmarks/bench_demo_formats.py)
    assert err.mean() < 4.0 and np.percentile(err, 99) < 28, (err.mean(), np.percentile(err, 99), err.max())
    lossless = export_lerobot(sim_demos, tmp_path / "lerobot_png", use_videos=False)
    assert not (lossless / "videos").exists()
    for i in range(3):
        assert_same(src[i], LeRobotDataset(lossless)[i])
    summary = import_lerobot(LeRobotImportConfig(src=str(lossless), out_dir=str(tmp_path / "imported")))
    assert summary["new_episodes"] == 3 and import_lerobot(LeRobotImportConfig(src=str(lossless), out_dir=str(tmp_path / "imported")))["new_episodes"] == 0
    for i in range(3):
        assert_same(src[i], DemoDataset(tmp_path / "imported")[i])
    bc_acts(out, tmp_path)  # straight from the LeRobot folder (video frames)


def test_lerobot_reader_names_what_is_wrong(sim_demos, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = export_lerobot(sim_demos, tmp_path / "lr")
    with pytest.raises(DemoImportError, match="no feature 'observation.images.top' for the camera"):
        LeRobotDataset(out, image_key="observation.images.top")
    eps_path = out / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    t = pq.read_table(eps_path)
    col = "videos/observation.images.agentview/from_timestamp"
    shifted = t.set_column(t.schema.get_field_index(col), col, pa.array([x + 0.025 for x in t.column(col).to_pylist()]))
    pq.write_table(shifted, eps_path)
    with pytest.raises(DemoImportError, match="out of sync"):
        LeRobotDataset(out)[1]
    data_path = out / "data" / "chunk-000" / "file-000.parquet"
    d = pq.read_table(data_path)
    state = d.column("observation.state").combine_chunks()
    vals = state.flatten().to_numpy().copy()
    vals[5] = np.nan
    d = d.set_column(d.schema.get_field_index("observation.state"), "observation.state", pa.FixedSizeListArray.from_arrays(pa.array(vals), state.type.list_size))
    pq.write_table(d, data_path)
    pq.write_table(t, eps_path)
    with pytest.raises(DemoImportError, match="episode 0: state .* NaN/inf at frame 0"):
        LeRobotDataset(out)[0]
    info = json.loads((out / "meta" / "info.json").read_text())
    (out / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(DemoImportError, match="v2.1; LeRobotDataset reads v3.x"):
        LeRobotDataset(out)
    with pytest.raises(DemoImportError, match="missing meta/episodes.jsonl"):
        open_lerobot(out)  # the v2.1 reader, which finds no v2.1 layout
    (out / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(DemoImportError, match="'v1.6'; this project reads v2.0, v2.1 and v3.x"):
        open_lerobot(out)



def test_lerobot_export_writes_current_video_info_and_import_skips_depth_and_keeps_every_task(sim_demos, tmp_path):
    """info.json's video info as current LeRobot writes it (``is_depth_map``, the encoder settings); a depth camera is
    never read as a colour one; a dataset of several tasks keeps them all in meta.json."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = export_lerobot(sim_demos, tmp_path / "lr", crf=20)
    info = json.loads((out / "meta" / "info.json").read_text())
    video = info["features"]["observation.images.agentview"]["info"]
    assert video["is_depth_map"] is False and "video.is_depth_map" not in video
    assert {"video.codec": "h264", "video.pix_fmt": "yuv420p", "video.crf": 20, "video.g": 2, "video.fps": 20}.items() <= video.items()
    # a depth camera beside it (first in the file, one channel) and a second task
    depth = {"dtype": "video", "shape": [32, 32, 1], "names": ["height", "width", "channels"], "info": {"video.is_depth_map": True}}
    info["features"] = {"observation.images.depth": depth, **info["features"]}
    (out / "meta" / "info.json").write_text(json.dumps(info))
    pq.write_table(pa.table({"task_index": [0, 1], "task": ["franka_pick", "open the drawer"]}), out / "meta" / "tasks.parquet")
    ds = LeRobotDataset(out, camera_keys="all")
    assert ds.image_key == "observation.images.agentview" and ds.camera_keys == []  # the depth map is no camera
    assert ds.meta.extra["tasks"] == ["franka_pick", "open the drawer"]
    with pytest.raises(DemoImportError, match="'observation.images.depth' is a depth map, not a colour camera"):
        LeRobotDataset(out, image_key="observation.images.depth")


# ---------------------------------------------------------------- rosbag2
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_rosbag2_export_then_import_keeps_every_frame_state_and_action(sim_demos, tmp_path, storage):
    bag = export_rosbag2(sim_demos, tmp_path / "bag", storage=storage)
    assert (bag / "metadata.yaml").is_file() and (bag / f"bag.{'mcap' if storage == 'mcap' else 'db3'}").is_file()
    summary = import_rosbag2(RosbagImportConfig(src=str(bag), out_dir=str(tmp_path / "back"), episode_topic="/sim/episode_done"))
    src, back = DemoDataset(sim_demos), DemoDataset(tmp_path / "back")
    assert summary["new_episodes"] == 3 and back.meta == src.meta
    for i in range(3):
        assert_same(src[i], back[i], keys=("image", "state", "action", "success", "seed"))  # a bag carries no reward


def test_rosbag2_with_two_cameras_round_trips_every_view_paired_by_stamp(tmp_path):
    """A demo folder with a wrist view exports it to /camera/wrist/image_raw; camera_topics (a list, the name read off the
    topic, or {name: topic}) imports it back beside image, frame for frame; a camera without a frame near a stamp is named."""
    from toto_robot.data.demos import DemoWriter
    from toto_robot.utils.config import ConfigError

    rng = np.random.default_rng(0)
    meta = DemoMeta(source="sim", task="t", image_size=(8, 8), state_dim=3, action_dim=2, fps=10.0)
    w = DemoWriter(tmp_path / "demos", meta)
    for e in range(2):
        T = 5 + e
        w.write_episode(rng.integers(0, 255, (T, 8, 8, 3), dtype=np.uint8), rng.normal(size=(T, 3)), rng.normal(size=(T, 2)), success=True,
                        cameras={"wrist_image": rng.integers(0, 255, (T, 6, 6, 3), dtype=np.uint8)})
    bag = export_rosbag2(tmp_path / "demos", tmp_path / "bag")
    for topics in (["/camera/wrist/image_raw"], {"wrist": "/camera/wrist/image_raw"}):
        out = tmp_path / f"back{type(topics).__name__}"
        import_rosbag2(RosbagImportConfig(src=str(bag), out_dir=str(out), image_topic="/camera/image_raw", episode_topic="/sim/episode_done",
                                          camera_topics=topics))
        src, back = DemoDataset(tmp_path / "demos"), DemoDataset(out)
        for i in range(2):
            assert_same(src[i], back[i], keys=("image", "wrist_image", "state", "action", "success"))
    assert RosbagImportConfig(src="x", out_dir="y", camera_topics=["/wrist_cam/color/image_raw", "/top/image"]).camera_topics == {
        "wrist_cam_image": "/wrist_cam/color/image_raw", "top_image": "/top/image"}
    with pytest.raises(ConfigError, match="clashing camera names"):
        RosbagImportConfig(src="x", out_dir="y", camera_topics=["/a/cam/image_raw", "/b/cam/image_raw"])
    # a wrist camera that skips a beat: no frame within tolerance_s of the third frame (leading frames without one are dropped)
    frames = rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    write_bag(tmp_path / "late", frames, [0.0, 0.1, 0.2, 0.3], states=np.zeros((4, 2)), state_t=[0.0, 0.1, 0.2, 0.3],
              actions=np.zeros((4, 2)), action_t=[0.05, 0.15, 0.25, 0.35], extra_camera=("/wrist/image_raw", [0.0, 0.1, 0.32, 0.42]))
    with pytest.raises(DemoImportError, match=r"frame 2 at 0.200 s has no frame on /wrist/image_raw within 0.05 s \(the nearest is 0.100 s"):
        import_rosbag2(RosbagImportConfig(src=str(tmp_path / "late"), out_dir=str(tmp_path / "late_out"), camera_topics=["/wrist/image_raw"],
                                          image_topic="/cam/image_raw"))


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def write_bag(path, frames, frame_t, states=None, state_t=None, actions=None, action_t=None, encoding="rgb8", joint=False,
              twist=False, compressed=False, extra_camera=None):
    """A hand-built rosbag2 (MCAP) with rosbags' writer: camera, state and action topics at the given times (s);
    ``extra_camera=(topic, times)``: a second rgb8 camera with the same frames at its own times."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = _typestore()
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]

    def header(t):
        ns = int(round(t * 1e9))
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="x")

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        if compressed:
            C = T["sensor_msgs/msg/CompressedImage"]
            c = w.add_connection("/cam/compressed", C.__msgtype__, typestore=ts)
            from PIL import Image

            for f, t in zip(frames, frame_t):
                buf = io.BytesIO()
                Image.fromarray(f).save(buf, format="PNG")
                w.write(c, int(t * 1e9), ts.serialize_cdr(C(header=header(t), format="png", data=np.frombuffer(buf.getvalue(), np.uint8)), C.__msgtype__))
        else:
            Im = T["sensor_msgs/msg/Image"]
            c = w.add_connection("/cam/image_raw", Im.__msgtype__, typestore=ts)
            for f, t in zip(frames, frame_t):
                H, W = f.shape[:2]
                step = W * 3 if encoding == "rgb8" else W * 2
                data = f.reshape(-1) if encoding == "rgb8" else np.zeros(H * step, np.uint8)
                w.write(c, int(t * 1e9), ts.serialize_cdr(Im(header=header(t), height=H, width=W, encoding=encoding, is_bigendian=0, step=step,
                                                             data=data), Im.__msgtype__))
            if extra_camera is not None:
                c = w.add_connection(extra_camera[0], Im.__msgtype__, typestore=ts)
                for f, t in zip(frames, extra_camera[1]):
                    H, W = f.shape[:2]
                    w.write(c, int(t * 1e9), ts.serialize_cdr(Im(header=header(t), height=H, width=W, encoding="rgb8", is_bigendian=0, step=W * 3,
                                                                 data=f.reshape(-1)), Im.__msgtype__))
        if states is not None:
            if joint:
                J = T["sensor_msgs/msg/JointState"]
                c = w.add_connection("/joint_states", J.__msgtype__, typestore=ts)
                for s, t in zip(states, state_t):
                    w.write(c, int(t * 1e9), ts.serialize_cdr(J(header=header(t), name=[f"j{i}" for i in range(len(s))], position=s.astype(np.float64),
                                                                velocity=np.zeros(0), effort=np.zeros(0)), J.__msgtype__))
            else:
                F = T["std_msgs/msg/Float32MultiArray"]
                L = T["std_msgs/msg/MultiArrayLayout"]
                c = w.add_connection("/robot/state", F.__msgtype__, typestore=ts)
                for s, t in zip(states, state_t):
                    w.write(c, int(t * 1e9), ts.serialize_cdr(F(layout=L(dim=[], data_offset=0), data=s.astype(np.float32)), F.__msgtype__))
        if actions is not None:
            if twist:
                TW, V3 = T["geometry_msgs/msg/TwistStamped"], T["geometry_msgs/msg/Vector3"]
                Tw = T["geometry_msgs/msg/Twist"]
                c = w.add_connection("/cmd_vel", TW.__msgtype__, typestore=ts)
                for a, t in zip(actions, action_t):
                    msg = TW(header=header(t), twist=Tw(linear=V3(x=a[0], y=a[1], z=a[2]), angular=V3(x=a[3], y=a[4], z=a[5])))
                    w.write(c, int(t * 1e9), ts.serialize_cdr(msg, TW.__msgtype__))
            else:
                F = T["std_msgs/msg/Float32MultiArray"]
                L = T["std_msgs/msg/MultiArrayLayout"]
                c = w.add_connection("/robot/action", F.__msgtype__, typestore=ts)
                for a, t in zip(actions, action_t):
                    w.write(c, int(t * 1e9), ts.serialize_cdr(F(layout=L(dim=[], data_offset=0), data=a.astype(np.float32)), F.__msgtype__))
    return path


def test_rosbag2_joint_states_twists_compressed_frames_gaps_and_derived_actions(tmp_path):
    rng = np.random.default_rng(0)
    n = 12
    frames = rng.integers(0, 256, (n, 6, 8, 3), dtype=np.uint8)
    ft = np.r_[np.arange(6) * 0.1, 5 + np.arange(6) * 0.1] + 100  # two bursts 4.5 s apart: two episodes by gap
    states = rng.normal(size=(n, 3))
    actions = rng.normal(size=(n, 6))
    bag = write_bag(tmp_path / "bag", frames, ft, states, ft - 0.004, actions, ft + 0.03, joint=True, twist=True, compressed=True)
    summary = import_rosbag2(RosbagImportConfig(src=str(bag), out_dir=str(tmp_path / "a"), gap_s=1.0, task="arm"))
    ds = DemoDataset(tmp_path / "a")
    assert summary["new_episodes"] == 2 and [len(ds[i]["image"]) for i in range(2)] == [6, 6]
    assert ds.meta.fps == pytest.approx(10.0) and ds.meta.task == "arm" and ds.meta.extra["topics"]["action"] == "/cmd_vel"
    np.testing.assert_array_equal(ds[1]["image"], frames[6:])  # PNG CompressedImage: exact
    np.testing.assert_array_equal(ds[1]["state"], states[6:].astype(np.float32))  # JointState positions
    np.testing.assert_array_equal(ds[0]["action"], actions[:6].astype(np.float32))  # TwistStamped [linear, angular]
    derived = import_rosbag2(RosbagImportConfig(src=str(bag), out_dir=str(tmp_path / "b"), gap_s=1.0, action_from="next_state_delta"))
    ds = DemoDataset(tmp_path / "b")
    assert derived["new_episodes"] == 2 and len(ds[0]["image"]) == 5
    np.testing.assert_array_equal(ds[0]["action"], (states[1:6].astype(np.float32) - states[:5].astype(np.float32)))


def test_rosbag2_import_names_what_is_wrong(tmp_path):
    rng = np.random.default_rng(1)
    n = 8
    frames = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    ft = 100 + np.arange(n) * 0.1
    states, actions = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
    cfg = dict(state_topic="/robot/state", action_topic="/robot/action")
    only_cam = write_bag(tmp_path / "only_cam", frames, ft)
    with pytest.raises(DemoImportError, match="choose the state topic; candidates: none"):
        import_rosbag2(RosbagImportConfig(src=str(only_cam), out_dir=str(tmp_path / "o1")))
    good = write_bag(tmp_path / "good", frames, ft, states, ft - 0.01, actions, ft + 0.05)
    with pytest.raises(DemoImportError, match=r"no topic /joint_states for the state; topics: /cam/image_raw \(sensor_msgs/Image\)"):
        import_rosbag2(RosbagImportConfig(src=str(good), out_dir=str(tmp_path / "o2"), state_topic="joint_states"))
    nan_states = states.copy()
    nan_states[4, 1] = np.nan
    nan_bag = write_bag(tmp_path / "nan", frames, ft, nan_states, ft - 0.01, actions, ft + 0.05)
    with pytest.raises(DemoImportError, match=r"/robot/state message 4 \(t=100.390 s\): NaN"):
        import_rosbag2(RosbagImportConfig(src=str(nan_bag), out_dir=str(tmp_path / "o3"), **cfg))
    depth = write_bag(tmp_path / "depth", frames, ft, states, ft - 0.01, actions, ft + 0.05, encoding="16UC1")
    with pytest.raises(DemoImportError, match="/cam/image_raw message 0: unsupported image encoding '16UC1'"):
        import_rosbag2(RosbagImportConfig(src=str(depth), out_dir=str(tmp_path / "o4"), **cfg))
    late = ft.copy()
    late[5:] += 0.3  # the state stream stalls for 0.3 s mid-episode
    drift = write_bag(tmp_path / "drift", frames, ft, states, late - 0.01, actions, ft + 0.05)
    with pytest.raises(DemoImportError, match=r"unsynchronised stamps: camera frame 5 at 100.500 s has no state on /robot/state within 0.05 s \(latest one is 0.110 s away\)"):
        import_rosbag2(RosbagImportConfig(src=str(drift), out_dir=str(tmp_path / "o5"), **cfg))
    # with skip_bad the good bag is imported and the bad one recorded with its reason
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copytree(good, folder / "a_good")
    shutil.copytree(drift, folder / "b_drift")
    summary = import_rosbag2(RosbagImportConfig(src=str(folder), out_dir=str(tmp_path / "o6"), skip_bad=True, **cfg))
    assert summary["new_episodes"] == 1 and len(summary["failed"]) == 1 and "b_drift" in summary["failed"][0]["source"]
    ledger = json.loads((tmp_path / "o6" / "import_ledger.json").read_text())
    assert any("unsynchronised stamps" in u.get("error", "") for u in ledger["units"].values())


IMPORT = ("import json, sys; from toto_robot.data.formats.rosbag2 import RosbagImportConfig, import_rosbag2; "
          "import_rosbag2(RosbagImportConfig(**json.loads(sys.argv[1])))")


def test_rosbag2_import_over_a_folder_resumes_after_a_kill_and_skips_copies(sim_demos, tmp_path):
    folder = tmp_path / "bags"
    export_rosbag2(sim_demos, folder / "day1" / "run_a")
    shutil.copytree(folder / "day1" / "run_a", folder / "day2_copy")  # the same recording under another name
    cfg = {"src": str(folder), "out_dir": str(tmp_path / "demos"), "episode_topic": "/sim/episode_done"}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOTO_CRASH_AT": "wrote episode_000001.npz"}  # killed after the 2nd episode landed
    res = subprocess.run([sys.executable, "-c", IMPORT, json.dumps(cfg)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    assert len(list((tmp_path / "demos" / "episodes").glob("episode_*.npz"))) == 2
    summary = import_rosbag2(RosbagImportConfig(**cfg))
    assert summary["units"] == 2 and summary["units_skipped_already_imported"] == 1 and summary["episodes"] == 3
    src, back = DemoDataset(sim_demos), DemoDataset(tmp_path / "demos")
    for i in range(3):
        assert_same(src[i], back[i], keys=("image", "state", "action", "success", "seed"))
    assert not [p for p in (tmp_path / "demos" / "episodes").iterdir() if p.name.startswith(".")]


def test_import_and_export_commands(sim_demos, tmp_path):
    from toto_robot.cli import main

    argv = sys.argv
    try:
        assert main(["export-demos", "format=rlds", f"demos={sim_demos}", f"out_dir={tmp_path / 'rlds'}", f"hydra.run.dir={tmp_path / 'h1'}"]) == 0
        assert main(["import-demos", "format=rlds", f"src={tmp_path / 'rlds'}", f"out_dir={tmp_path / 'back'}", f"hydra.run.dir={tmp_path / 'h2'}"]) == 0
    finally:
        sys.argv = argv
    assert len(DemoDataset(tmp_path / "back")) == 3


# ---------------------------------------------------------------- through ROS: simulator bridge -> bag recorder -> import
@pytest.mark.slow
@pytest.mark.ros
@pytest.mark.xdist_group("ros")
def test_sim_episodes_recorded_through_ros_into_a_bag_import_as_the_same_demos_as_collecting_directly(tmp_path):
    pytest.importorskip("rclpy")
    from toto_robot.ros_nodes.bag_recorder_node import record_sim_episodes

    episodes, size = 2, 32
    record_sim_episodes(tmp_path / "bag", "franka_pick", episodes, image_size=size)
    summary = import_rosbag2(RosbagImportConfig(src=str(tmp_path / "bag"), out_dir=str(tmp_path / "imported"), state_topic="/robot/state",
                                                action_topic="/toto/action", episode_topic="/sim/episode_done", task="franka_pick",
                                                action_space="ee_delta", tolerance_s=1.0))  # the bridge may stall on a loaded CPU
    assert summary["new_episodes"] == episodes
    direct = collect(CollectConfig(task="franka_pick", episodes=episodes, out_dir=str(tmp_path / "direct"), image_size=size, randomization={},
                                   videos=False, preview_episodes=0))
    a, b = DemoDataset(direct), DemoDataset(tmp_path / "imported")
    for i in range(episodes):
        assert_same(a[i], b[i], keys=("image", "state", "action", "success"))  # the same seeds give the same episodes, bit for bit
    bc_acts(tmp_path / "imported", tmp_path)


def test_rlds_with_several_cameras_names_the_override_and_imports_every_camera(tmp_path):
    """Two image features, neither observation/image: the error names format.read.image_key; camera_keys=all keeps the other."""
    from PIL import Image

    from toto_robot.data.formats.rlds import rlds_features

    ds_dir = tmp_path / "two" / "1.0.0"
    ds_dir.mkdir(parents=True)
    tree = rlds_features(DemoMeta(source="x", task="t", image_size=(8, 8), state_dim=2, action_dim=2), wrist=False, seeds=False)
    obs = tree["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"]["observation"]["featuresDict"]["features"]
    obs["top"] = obs.pop("image")
    obs["side"] = dict(obs["top"])
    (ds_dir / "features.json").write_text(json.dumps(tree))
    rng = np.random.default_rng(0)
    views = {k: rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8) for k in ("top", "side")}

    def png(f):
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="PNG")
        return buf.getvalue()

    rec = serialize_example({**{f"steps/observation/{k}": [png(f) for f in v] for k, v in views.items()},
                             "steps/observation/state": np.zeros((3, 2), np.float32), "steps/action": np.ones((3, 2), np.float32)})
    with open(ds_dir / "two-train.tfrecord-00000-of-00001", "wb") as f:
        write_records(f, iter([rec]))
    with pytest.raises(DemoImportError, match=r"format.read.image_key=<feature>"):
        import_rlds(RLDSImportConfig(src=str(tmp_path / "two"), out_dir=str(tmp_path / "a")))
    import_rlds(RLDSImportConfig(src=str(tmp_path / "two"), out_dir=str(tmp_path / "a"), image_key="observation/top", camera_keys="all"))
    ep = DemoDataset(tmp_path / "a")[0]
    np.testing.assert_array_equal(ep["image"], views["top"])
    np.testing.assert_array_equal(ep["side_image"], views["side"])
