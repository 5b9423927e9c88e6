"""LeRobot v2.1 and its dialects, and partial datasets of v2.1 and v3.0, built on the fly with pyarrow and PyAV:
the standard v2.1 layout (``{episode_chunk}`` templates, AV1 video, float32 fixed-size lists, several chunks),
an SO-101-like dialect (``{chunk_index}`` templates, no ``index`` / ``task_index``, float64 lists, [C, H, W]
camera shapes, two MPEG-4 Part 2 cameras, wall-clock timestamps, keys ``state`` / ``actions``), and
downloads that stop part way (episodes listed in ``meta/`` without their files). Imported arrays are compared
with what was written; each camera frame is a flat colour that names its episode and frame."""
import json
import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from toto_robot.data.demos import DemoDataset
from toto_robot.data.formats import open_demos
from toto_robot.data.formats.common import DemoImportError
from toto_robot.data.formats.lerobot import LeRobotImportConfig, import_lerobot, open_lerobot
from toto_robot.data.formats.lerobot_v21 import LeRobotV21Dataset

LOGGER = "toto_robot.data.formats.lerobot"
SIZE = 64  # SVT-AV1 encodes frames of 64 px and up
FPS = 10
LEVEL_TOL = 8  # a flat colour through yuv420p and a lossy codec comes back within a few levels


def frame_level(e: int, k: int) -> int:
    """The grey level of frame k of episode e: consecutive frames differ by 23, so a frame off by one is seen."""
    return 20 + (37 * e + 23 * k) % 200


def frames_of(e: int, n: int, cam: int = 0) -> np.ndarray:
    levels = np.array([frame_level(e, k) for k in range(n)], np.uint8)
    img = np.empty((n, SIZE, SIZE, 3), np.uint8)
    img[..., 0] = levels[:, None, None]
    img[..., 1] = 255 - levels[:, None, None]
    img[..., 2] = 60 + 40 * cam  # the second camera is told apart by its blue
    return img


def write_video(path: Path, frames: np.ndarray, codec: str) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        for k, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def episode_arrays(e: int, n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(e)
    return rng.normal(size=(n, dim)) * 100, rng.normal(size=(n, dim))  # float64; written as the dialect's dtype


def write_v21(root: Path, lengths: dict[int, int], present: list[int], dialect: str = "standard", dim: int = 5) -> dict:
    """A LeRobot v2.1 folder whose meta/ lists every episode of ``lengths`` and whose data and videos hold ``present``;
    returns {episode_index: (state, action)} as written (float32-exact for the standard layout)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    so101 = dialect == "so101"
    chunk = "chunk_index" if so101 else "episode_chunk"
    state_key, action_key = ("state", "actions") if so101 else ("observation.state", "action")
    cams = ["observation.images.cam0", "observation.images.cam1"] if so101 else ["observation.images.cam_high"]
    value = "float64" if so101 else "float32"
    features = {state_key: {"dtype": "float32", "shape": [dim], "names": [f"j{i}" for i in range(dim)]},  # so101: says float32, holds float64
                action_key: {"dtype": "float32", "shape": [dim], "names": [f"j{i}" for i in range(dim)]}}
    for cam in cams:
        features[cam] = ({"dtype": "video", "shape": [3, SIZE, SIZE], "names": ["channel", "height", "width"],
                          "video_info": {"video.fps": FPS, "video.codec": "mp4v"}} if so101 else
                         {"dtype": "video", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channel"],
                          "info": {"video.codec": "av1", "video.fps": FPS}})
    if not so101:
        for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")):
            features[name] = {"dtype": dtype, "shape": [1], "names": None}
    chunks_size = 25 if so101 else 2  # standard: episodes 0-1 in chunk-000, 2-3 in chunk-001, ...
    info = {"codebase_version": "v2.1", "robot_type": "test", "total_episodes": len(lengths), "total_frames": sum(lengths.values()),
            "chunks_size": chunks_size, "fps": FPS,
            "data_path": f"data/chunk-{{{chunk}:03d}}/episode_{{episode_index:06d}}.parquet",
            "video_path": f"videos/chunk-{{{chunk}:03d}}/{{video_key}}/episode_{{episode_index:06d}}.mp4", "features": features}
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    task = "fold the cloth" if so101 else "pick up the bottle"
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": task}) + "\n")
    (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps({"episode_index": e, "tasks": [task], "length": n}) + "\n"
                                                          for e, n in sorted(lengths.items())))
    written, index = {}, 0
    for e in sorted(present):
        n = lengths[e]
        state, action = episode_arrays(e, n, dim)
        if not so101:
            state, action = state.astype(np.float32), action.astype(np.float32)
        written[e] = (state, action)
        if so101:  # variable-size list<double>, wall-clock timestamps (about 0.1 s apart, drifting), no index / task_index
            cols = {"frame_index": pa.array(np.arange(n)), "timestamp": pa.array(np.arange(n) * 0.11 + 0.003 * (np.arange(n) % 3)),
                    "episode_index": pa.array(np.full(n, e)), state_key: pa.array(list(state)), action_key: pa.array(list(action)),
                    "next.done": pa.array(np.arange(n) == n - 1)}
        else:
            cols = {state_key: pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), dim),
                    action_key: pa.FixedSizeListArray.from_arrays(pa.array(action.ravel()), dim),
                    "timestamp": pa.array((np.arange(n) / FPS).astype(np.float32)), "frame_index": pa.array(np.arange(n)),
                    "episode_index": pa.array(np.full(n, e)), "index": pa.array(index + np.arange(n)), "task_index": pa.array(np.zeros(n, np.int64))}
        index += n
        c = e // chunks_size
        path = root / info["data_path"].format(**{chunk: c}, episode_index=e)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), path)
        for i, cam in enumerate(cams):
            write_video(root / info["video_path"].format(**{chunk: c}, episode_index=e, video_key=cam), frames_of(e, n, i),
                        "mpeg4" if so101 else "libsvtav1")
    assert all(pa.types.is_float64(pq.read_schema(p).field(state_key).type.value_type) == so101 for p in root.glob("data/*/*.parquet"))
    return written


def write_v30_per_episode(root: Path, lengths: dict[int, int], data_present: list[int], video_present: list[int], dim: int = 4) -> dict:
    """A LeRobot v3.0 folder with one data and one video file per episode (as the lingzu recorder writes), keys
    ``image`` / ``state`` / ``actions``; meta/episodes lists every episode of ``lengths``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = {"image": {"dtype": "video", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]},
                "state": {"dtype": "float32", "shape": [dim], "names": None}, "actions": {"dtype": "float32", "shape": [dim], "names": None}}
    for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    info = {"codebase_version": "v3.0", "fps": FPS, "total_episodes": len(lengths), "features": features,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"}
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    rows, start, written = [], 0, {}
    for e, n in sorted(lengths.items()):
        rows.append({"episode_index": e, "tasks": ["teleop"], "length": n, "data/chunk_index": 0, "data/file_index": e,
                     "dataset_from_index": start, "dataset_to_index": start + n, "videos/image/chunk_index": 0,
                     "videos/image/file_index": e, "videos/image/from_timestamp": 0.0, "videos/image/to_timestamp": n / FPS})
        state, action = (a.astype(np.float32) for a in episode_arrays(e, n, dim))
        written[e] = (state, action)
        if e in data_present:
            path = root / info["data_path"].format(chunk_index=0, file_index=e)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"actions": pa.array(list(action), pa.list_(pa.float32())), "state": pa.array(list(state), pa.list_(pa.float32())),
                                     "timestamp": pa.array((np.arange(n) / FPS).astype(np.float32)), "frame_index": pa.array(np.arange(n)),
                                     "episode_index": pa.array(np.full(n, e)), "index": pa.array(start + np.arange(n)),
                                     "task_index": pa.array(np.zeros(n, np.int64))}), path)
        if e in video_present:
            write_video(root / info["video_path"].format(video_key="image", chunk_index=0, file_index=e), frames_of(e, n), "mpeg4")
        start += n
    pq.write_table(pa.Table.from_pylist(rows), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.table({"task_index": [0], "task": ["teleop"]}), root / "meta" / "tasks.parquet")
    return written


def assert_frames(images: np.ndarray, e: int, cam: int = 0) -> None:
    """Every frame is the one written for its place: red = the frame's level, blue = the camera's."""
    want = np.array([frame_level(e, k) for k in range(len(images))])
    got = images[..., 0].reshape(len(images), -1).mean(1)
    assert np.abs(got - want).max() < LEVEL_TOL, (e, np.round(got[:6]), want[:6])
    assert np.abs(images[..., 2].mean() - (60 + 40 * cam)) < LEVEL_TOL


def lerobot_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


# ---------------------------------------------------------------- v2.1, standard layout
def test_v21_standard_layout_with_av1_video_reads_every_array_as_written(tmp_path, caplog):
    lengths = {0: 7, 1: 5, 2: 6}
    written = write_v21(tmp_path / "g1", lengths, present=[0, 1, 2])
    assert (tmp_path / "g1" / "data" / "chunk-001" / "episode_000002.parquet").is_file()  # chunks_size 2: episode 2 in chunk 1
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ds = open_lerobot(tmp_path / "g1")
    assert isinstance(ds, LeRobotV21Dataset) and len(ds) == 3 and ds.missing_episodes == []
    assert (ds.state_key, ds.action_key, ds.image_key) == ("observation.state", "action", "observation.images.cam_high")
    assert ds.meta.image_size == (SIZE, SIZE) and ds.meta.state_dim == ds.meta.action_dim == 5 and ds.meta.fps == FPS
    assert ds.meta.task == "pick up the bottle"
    assert not lerobot_warnings(caplog)
    picked = [r.getMessage() for r in caplog.records if r.name == LOGGER and "state observation.state [5]" in r.getMessage()]
    assert len(picked) == 1 and "camera observation.images.cam_high" in picked[0] and "action action [5]" in picked[0]
    for i, e in enumerate(sorted(lengths)):
        ep = ds[i]
        assert len(ep["image"]) == lengths[e] and ep["image"].shape[1:] == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(ep["state"], written[e][0])
        np.testing.assert_array_equal(ep["action"], written[e][1])
        assert_frames(ep["image"], e)
        assert str(ep["language"]) == "pick up the bottle" and not ep["success"]
    summary = import_lerobot(LeRobotImportConfig(src=str(tmp_path / "g1"), out_dir=str(tmp_path / "demos"), image_size=32))
    assert summary["new_episodes"] == 3 and not summary["failed"]
    demos = DemoDataset(tmp_path / "demos")
    assert demos.meta.image_size == (32, 32) and [len(demos[i]["image"]) for i in range(3)] == [7, 5, 6]
    np.testing.assert_array_equal(demos[1]["state"], written[1][0])
    assert len(open_demos(tmp_path / "g1")) == 3  # behaviour cloning reads the folder directly too


def test_v21_missing_video_and_bad_template_are_named(tmp_path):
    write_v21(tmp_path / "g1", {0: 4}, present=[0])
    info_path = tmp_path / "g1" / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "data_path": "data/{shard}/episode_{episode_index:06d}.parquet"}))
    with pytest.raises(DemoImportError, match=r"data_path .*\{shard\}.* does not fill \('shard'\)"):
        open_lerobot(tmp_path / "g1")
    info_path.write_text(json.dumps(info))
    with pytest.raises(DemoImportError, match="no feature 'obs.joints' for the state; features and columns: .*observation.state"):
        open_lerobot(tmp_path / "g1", state_key="obs.joints")
    next((tmp_path / "g1" / "videos").rglob("*.mp4")).unlink()
    with pytest.raises(DemoImportError, match="none of the 1 episodes meta/ lists has its files .*episode 0 needs videos/chunk-000/"
                                              "observation.images.cam_high/episode_000000.mp4"):
        open_lerobot(tmp_path / "g1")


# ---------------------------------------------------------------- v2.1, SO-101-like dialect
def test_so101_dialect_chunk_index_no_index_columns_float64_two_mp4v_cameras(tmp_path, caplog):
    lengths = {0: 6, 1: 8}
    written = write_v21(tmp_path / "so101", lengths, present=[0, 1], dialect="so101", dim=3)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ds = open_lerobot(tmp_path / "so101", wrist_image_key="observation.images.cam1")
        eps = [ds[0], ds[1]]
    assert (ds.state_key, ds.action_key) == ("state", "actions")  # found among the keys users' recordings use
    picked = [m for m in (r.getMessage() for r in caplog.records if r.name == LOGGER) if "state state [3], action actions [3]" in m]
    assert len(picked) == 1 and "of ['observation.images.cam0', 'observation.images.cam1']" in picked[0]
    assert ds.meta.image_size == (SIZE, SIZE)  # info.json says [3, H, W] by its axis names
    for e, ep in zip(sorted(lengths), eps):
        assert len(ep["image"]) == len(ep["wrist_image"]) == lengths[e] and ep["state"].dtype == np.float32
        np.testing.assert_array_equal(ep["state"], written[e][0].astype(np.float32))
        np.testing.assert_array_equal(ep["action"], written[e][1].astype(np.float32))
        assert_frames(ep["image"], e, cam=0)
        assert_frames(ep["wrist_image"], e, cam=1)
    # the wall-clock timestamps are not the videos' times: frames matched in order, said once for the dataset
    order = [m for m in lerobot_warnings(caplog) if "matched in order" in m]
    assert len(order) == 1 and len(lerobot_warnings(caplog)) == 1
    summary = import_lerobot(LeRobotImportConfig(src=str(tmp_path / "so101"), out_dir=str(tmp_path / "demos")))
    assert summary["episodes"] == 2 and not summary["failed"]
    # an explicit key that exists is used as given
    assert open_lerobot(tmp_path / "so101", state_key="actions", action_key="state").state_key == "actions"
    # every camera: the others stored as <name>_image beside image, each frame as written, and imported so
    every = open_lerobot(tmp_path / "so101", camera_keys="all")
    assert every.camera_keys == ["observation.images.cam1"]
    assert_frames(every[1]["cam1_image"], 1, cam=1)
    import_lerobot(LeRobotImportConfig(src=str(tmp_path / "so101"), out_dir=str(tmp_path / "demos2"), camera_keys="all", image_size=16))
    ep = DemoDataset(tmp_path / "demos2")[0]
    assert ep["cam1_image"].shape == ep["image"].shape == (6, 16, 16, 3)
    with pytest.raises(DemoImportError, match="not a camera"):
        open_lerobot(tmp_path / "so101", camera_keys=["state"])


# ---------------------------------------------------------------- partial datasets
def test_partial_v21_imports_what_is_there_names_the_rest_in_one_line_and_continues_when_more_arrives(tmp_path, caplog):
    lengths = {e: 4 + e for e in range(12)}
    present = [1, 2, 4, 11]
    written = write_v21(tmp_path / "part", lengths, present=present)
    out = tmp_path / "demos"
    with caplog.at_level(logging.INFO):
        summary = import_lerobot(LeRobotImportConfig(src=str(tmp_path / "part"), out_dir=str(out)))
    assert summary["new_episodes"] == 4 and summary["failed"] == []  # no skip_bad needed
    assert json.loads((out / "import_summary.json").read_text())["source_episodes_without_files"] == [0, 3, 5, 6, 7, 8, 9, 10]
    warnings = lerobot_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "8 of 12 episodes listed in meta/ have no files here (partial dataset), left out: 0, 3, 5, 6, 7, 8, 9, 10 " in warnings[0]
    assert "episode 0 needs data/chunk-000/episode_000000.parquet" in warnings[0] and "importing the 4 present" in warnings[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    demos = DemoDataset(out)
    for i, e in enumerate(present):
        assert len(demos[i]["image"]) == lengths[e]
        np.testing.assert_array_equal(demos[i]["state"], written[e][0])
        assert_frames(demos[i]["image"], e)
    # episode 3 arrives later (episode 2's files are unchanged): a rerun imports episode 3 alone
    import shutil

    more = write_v21(tmp_path / "full", lengths, present=[3])
    for sub in ("data", "videos"):
        for f in (p for p in (tmp_path / "full" / sub).rglob("*") if p.is_file()):
            dest = tmp_path / "part" / f.relative_to(tmp_path / "full")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dest)
    summary = import_lerobot(LeRobotImportConfig(src=str(tmp_path / "part"), out_dir=str(out)))
    assert summary["new_episodes"] == 1 and summary["units_skipped_already_imported"] == 4 and summary["episodes"] == 5
    np.testing.assert_array_equal(DemoDataset(out)[4]["action"], more[3][1])
    # a rerun that would pick other keys is refused by the ledger, naming the option
    with pytest.raises(DemoImportError, match="state_key: 'observation.state' -> 'action'"):
        import_lerobot(LeRobotImportConfig(src=str(tmp_path / "part"), out_dir=str(out), state_key="action"))


def test_partial_v30_with_one_file_per_episode_imports_what_is_there(tmp_path, caplog):
    lengths = {e: 5 + e for e in range(6)}
    written = write_v30_per_episode(tmp_path / "lingzu", lengths, data_present=[3, 4, 5], video_present=[2, 3, 5])
    with caplog.at_level(logging.INFO):
        summary = import_lerobot(LeRobotImportConfig(src=str(tmp_path / "lingzu"), out_dir=str(tmp_path / "demos")))
    assert summary["new_episodes"] == 2 and summary["failed"] == []
    warnings = lerobot_warnings(caplog)
    assert len(warnings) == 1 and "4 of 6 episodes listed in meta/ have no files here (partial dataset), left out: 0, 1, 2, 4 " in warnings[0]
    assert "episode 0 needs data/chunk-000/file-000.parquet" in warnings[0]
    picked = [r.getMessage() for r in caplog.records if r.name == LOGGER and "camera image, state state [4], action actions [4]" in r.getMessage()]
    assert len(picked) == 1
    demos = DemoDataset(tmp_path / "demos")
    assert demos.meta.state_dim == demos.meta.action_dim == 4
    for i, e in enumerate([3, 5]):
        assert len(demos[i]["image"]) == lengths[e]
        np.testing.assert_array_equal(demos[i]["state"], written[e][0])
        np.testing.assert_array_equal(demos[i]["action"], written[e][1])
        assert_frames(demos[i]["image"], e)


def test_import_command_reads_a_v21_folder_with_the_documented_defaults(tmp_path):
    from toto_robot.cli import main
    import sys

    write_v21(tmp_path / "so101", {0: 5, 1: 6, 2: 4}, present=[1, 2], dialect="so101", dim=2)
    argv = sys.argv
    try:
        assert main(["import-demos", "format=lerobot", f"src={tmp_path / 'so101'}", f"out_dir={tmp_path / 'out'}", "image_size=32",
                     f"hydra.run.dir={tmp_path / 'h'}"]) == 0
    finally:
        sys.argv = argv
    demos = DemoDataset(tmp_path / "out")
    assert len(demos) == 2 and demos.meta.state_dim == 2 and demos.meta.image_size == (32, 32)
    assert [len(demos[i]["image"]) for i in range(2)] == [6, 4]
