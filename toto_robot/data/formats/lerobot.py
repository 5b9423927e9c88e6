"""LeRobot dataset v3.0 read and written with pyarrow and PyAV (no ``lerobot``, ``datasets`` or pandas); v2.0 / v2.1
folders are read by ``lerobot_v21.LeRobotV21Dataset`` through the same reader (``open_lerobot`` picks by version).

The layout follows LeRobot's ``codebase_version`` "v3.0" (``lerobot/datasets/utils.py``)::

    meta/info.json                                   # features, fps, totals, path templates
    meta/stats.json                                  # per-feature min/max/mean/std/count (+ quantiles)
    meta/tasks.parquet                               # task strings (the index) -> task_index
    meta/episodes/chunk-000/file-000.parquet         # one row per episode: length, tasks, data and video offsets, stats/*
    data/chunk-000/file-000.parquet                  # one row per frame: observation.state, action, timestamp, frame_index,
                                                     # episode_index, index, task_index, next.reward, next.success
    videos/<camera key>/chunk-000/file-000.mp4       # all episodes' frames of one camera, back to back

An episode's frames of a camera are found in its video file at ``videos/<key>/from_timestamp +
timestamp``; a decoded frame must sit within ``tolerance_s`` of that time (LeRobot's own rule, 1e-4 s).
Cameras stored as ``image`` (PNG bytes in the data parquet) are read too. Keys left unset are picked
(``STATE_KEYS``, ``ACTION_KEYS``, the first camera) and named in one log line; episodes that ``meta/`` lists
but whose files are absent (a partial download) are left out and named in one warning.

``export_lerobot`` writes a demo folder in this layout: H.264 (yuv420p, crf 18 by default) videos,
or with ``use_videos=False`` PNG images in the parquet (bit-exact frames). States, actions, rewards and
success flags are stored exactly (float32 / bool). ``meta/toto_demo.json`` keeps the ``DemoMeta`` and
per-episode seeds so that importing the export gives back the same dataset; LeRobot ignores it.

LeRobot's loader (``lerobot.datasets.LeRobotDataset``) is not a dependency: its package pins
``torch<2.11`` and ``av<16``, which conflict with this project's pinned torch 2.13 and av 18.
"""
from __future__ import annotations

import io
import json
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from toto_robot.constants import ACTION, LANGUAGE, OBS_IMAGE, OBS_STATE, OBS_WRIST_IMAGE, REWARD, SEED, SUCCESS
from toto_robot.data.demos import DemoDataset, DemoMeta, validate_episode
from toto_robot.data.formats.common import SUMMARY_NAME, DemoImportError, Episode, Unit, camera_field, extra_camera_fields, run_import
from toto_robot.utils.io import atomic_save_json, staged_dir

log = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
SIDECAR = "meta/toto_demo.json"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


def is_lerobot_dataset(root: str | Path) -> bool:
    return (Path(root) / "meta" / "info.json").is_file()


# ---------------------------------------------------------------- video
def encode_video(path: Path, frames: Iterator[np.ndarray], fps: int, size: tuple[int, int], crf: int = 18) -> None:
    """uint8 RGB frames -> H.264 MP4 whose frame k is presented at exactly k / fps seconds."""
    import av
    from fractions import Fraction

    H, W = size
    if H % 2 or W % 2:
        raise DemoImportError(f"H.264 with yuv420p needs even frame sizes, got {H}x{W}; export with use_videos=false (PNG frames)")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": str(crf), "g": "2", "preset": "veryfast"}  # g=2: seeking a frame decodes at most one other
        for k, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def is_depth_map(feature: dict) -> bool:
    """A depth camera: flagged ``is_depth_map`` (or the older ``video.is_depth_map``) in its info, or one channel."""
    info = feature.get("info") or {}
    shape = feature.get("shape") or []
    return bool(info.get("is_depth_map") or info.get("video.is_depth_map")) or (len(shape) == 3 and shape[-1] == 1)


def rgb_cameras(features: dict) -> list[str]:
    """The colour camera features (dtype video or image, not depth maps), in info.json's order."""
    return [k for k, ft in features.items() if ft.get("dtype") in ("video", "image") and not is_depth_map(ft)]


def video_info(height: int, width: int, fps: int, crf: int) -> dict:
    """A video feature's ``info`` as current LeRobot writes it: the stream (size, codec, pixel format, rate, channels),
    ``is_depth_map`` (the older ``video.is_depth_map`` spelling is what v2.1 and early v3.0 datasets carry; the importer
    reads both), and the encoder settings ``encode_video`` used, which LeRobot records for its own videos."""
    return {"video.height": height, "video.width": width, "video.codec": "h264", "video.pix_fmt": "yuv420p", "video.fps": fps,
            "video.channels": 3, "video.g": 2, "video.crf": crf, "video.preset": "veryfast", "video.fast_decode": 0,
            "video.video_backend": "pyav", "video.extra_options": {}, "is_depth_map": False, "has_audio": False}


def decode_video(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames of a video: (uint8 [N, H, W, 3], presentation times in seconds [N])."""
    import av

    if not path.is_file():
        raise DemoImportError(f"missing video file {path}")
    frames, times = [], []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(float(frame.time))
    except av.error.FFmpegError as e:
        raise DemoImportError(f"{path}: unreadable video ({e})") from e
    order = np.argsort(times, kind="stable")
    return np.stack(frames)[order], np.asarray(times)[order]


# ---------------------------------------------------------------- stats
def feature_stats(x: np.ndarray, image: bool = False) -> dict:
    """LeRobot's stats of one feature: over frames (and pixels for images, per channel as [3, 1, 1] in [0, 1])."""
    if image:
        v = x.reshape(-1, 3).astype(np.float64) / 255.0
        shape = (3, 1, 1)
    else:
        v = x.reshape(len(x), -1).astype(np.float64)
        shape = (v.shape[1],)
    q = np.quantile(v, QUANTILES, axis=0)
    stats = {"min": v.min(0), "max": v.max(0), "mean": v.mean(0), "std": v.std(0)}
    stats.update({f"q{int(round(p * 100)):02d}": q[i] for i, p in enumerate(QUANTILES)})
    out = {k: val.reshape(shape).tolist() for k, val in stats.items()}
    out["count"] = [int(len(x))]
    return out


# ---------------------------------------------------------------- parquet helpers
def _hf_feature(ft: dict) -> dict:
    """The ``datasets`` feature JSON of a LeRobot feature (the schema metadata ``datasets`` reads back)."""
    if ft["dtype"] == "image":
        return {"_type": "Image"}
    value = {"dtype": ft["dtype"], "_type": "Value"}
    return value if list(ft["shape"]) == [1] else {"feature": value, "length": int(ft["shape"][0]), "_type": "List"}


def _arrow_column(values: np.ndarray, ft: dict):
    import pyarrow as pa

    types = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_()}
    if list(ft["shape"]) == [1]:
        return pa.array(values.reshape(-1), type=types[ft["dtype"]])
    n = int(ft["shape"][0])
    flat = pa.array(values.reshape(-1), type=types[ft["dtype"]])
    return pa.FixedSizeListArray.from_arrays(flat, n)


def _write_parquet(table, path: Path) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _tasks_table(tasks: list[str]):
    """``meta/tasks.parquet`` as pandas writes a frame indexed by ``task`` (LeRobot reads it with ``pd.read_parquet``)."""
    import pyarrow as pa

    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {"index_columns": ["task"], "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                                                                  "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
                   "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
                               {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None}],
                   "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3"}
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


# ---------------------------------------------------------------- export
def export_lerobot(demos: str | Path, out: str | Path, use_videos: bool = True, crf: int = 18, robot_type: str | None = None,
                   camera: str | None = None) -> Path:
    """A demo folder -> a LeRobot v3.0 dataset folder ``out`` (staged in a hidden folder, then renamed into place)."""
    import pyarrow as pa
    from tqdm.auto import tqdm

    ds = DemoDataset(demos)
    if len(ds) == 0:
        raise DemoImportError(f"{demos}: no episodes to export")
    meta = ds.meta
    fps = int(round(meta.fps))
    if fps < 1 or abs(fps - meta.fps) > 1e-6:
        log.warning("LeRobot stores an integer fps: %s is written as %d", meta.fps, fps)
    eps = [ds[i] for i in tqdm(range(len(ds)), desc="read demos", unit="ep", leave=False)]
    H, W = meta.image_size
    cam = f"observation.images.{camera or meta.extra.get('camera', 'front')}"
    cams = {cam: OBS_IMAGE}
    if all(OBS_WRIST_IMAGE in ep for ep in eps):
        cams["observation.images.wrist"] = OBS_WRIST_IMAGE
    kind = "video" if use_videos else "image"
    features: dict = {}
    for key in cams:
        features[key] = {"dtype": kind, "shape": [H, W, 3], "names": ["height", "width", "channels"]}
    features["observation.state"] = {"dtype": "float32", "shape": [meta.state_dim], "names": [f"state_{i}" for i in range(meta.state_dim)]}
    features["action"] = {"dtype": "float32", "shape": [meta.action_dim], "names": [f"action_{i}" for i in range(meta.action_dim)]}
    features["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    features["next.success"] = {"dtype": "bool", "shape": [1], "names": None}
    features.update(json.loads(json.dumps(DEFAULT_FEATURES)))

    tasks = list(OrderedDict.fromkeys(str(ep[LANGUAGE]) if LANGUAGE in ep else meta.task for ep in eps))
    lengths = [len(ep[OBS_IMAGE]) for ep in eps]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
    N = int(sum(lengths))
    cols = {
        "observation.state": np.concatenate([ep[OBS_STATE] for ep in eps]).astype(np.float32),
        "action": np.concatenate([ep[ACTION] for ep in eps]).astype(np.float32),
        "next.reward": np.concatenate([ep.get(REWARD, np.zeros(len(ep[OBS_IMAGE]), np.float32)) for ep in eps]).astype(np.float32),
        "next.success": np.concatenate([(np.arange(n) == n - 1) & bool(ep[SUCCESS]) for n, ep in zip(lengths, eps)]),
        "timestamp": np.concatenate([np.arange(n, dtype=np.float64) / fps for n in lengths]).astype(np.float32),
        "frame_index": np.concatenate([np.arange(n) for n in lengths]).astype(np.int64),
        "episode_index": np.concatenate([np.full(n, e) for e, n in enumerate(lengths)]).astype(np.int64),
        "index": np.arange(N, dtype=np.int64),
        "task_index": np.concatenate([np.full(n, tasks.index(str(ep[LANGUAGE]) if LANGUAGE in ep else meta.task))
                                      for n, ep in zip(lengths, eps)]).astype(np.int64),
    }
    out = Path(out)
    with staged_dir(out) as tmp:
        arrays, names = [], []
        for key, ft in features.items():
            if ft["dtype"] == "video":
                continue
            if ft["dtype"] == "image":
                blobs = [_png_bytes(f) for ep in eps for f in ep[cams[key]]]
                arrays.append(pa.StructArray.from_arrays([pa.array(blobs, pa.binary()), pa.array([None] * N, pa.string())], ["bytes", "path"]))
            else:
                arrays.append(_arrow_column(cols[key], ft))
            names.append(key)
        hf = {"info": {"features": {k: _hf_feature(features[k]) for k in names}}}
        table = pa.table(dict(zip(names, arrays))).replace_schema_metadata({b"huggingface": json.dumps(hf).encode()})
        _write_parquet(table, tmp / DATA_PATH.format(chunk_index=0, file_index=0))
        if use_videos:
            for key, src in cams.items():
                path = tmp / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
                path.parent.mkdir(parents=True, exist_ok=True)
                encode_video(path, tqdm((f for ep in eps for f in ep[src]), total=N, desc=f"encode {key}", unit="frame", leave=False),
                             fps, (H, W), crf)
                features[key]["info"] = video_info(H, W, fps, crf)
        _write_parquet(_tasks_table(tasks), tmp / "meta" / "tasks.parquet")
        # per-episode metadata, one row each
        ep_rows: dict[str, list] = {"episode_index": list(range(len(eps))),
                                    "tasks": [[str(ep[LANGUAGE]) if LANGUAGE in ep else meta.task] for ep in eps],
                                    "length": lengths, "data/chunk_index": [0] * len(eps), "data/file_index": [0] * len(eps),
                                    "dataset_from_index": [int(s) for s in starts], "dataset_to_index": [int(s + n) for s, n in zip(starts, lengths)]}
        if use_videos:
            for key in cams:
                ep_rows[f"videos/{key}/chunk_index"] = [0] * len(eps)
                ep_rows[f"videos/{key}/file_index"] = [0] * len(eps)
                ep_rows[f"videos/{key}/from_timestamp"] = [float(s) / fps for s in starts]
                ep_rows[f"videos/{key}/to_timestamp"] = [float(s + n) / fps for s, n in zip(starts, lengths)]
        ep_rows["meta/episodes/chunk_index"] = [0] * len(eps)
        ep_rows["meta/episodes/file_index"] = [0] * len(eps)
        stat_keys = [k for k in features if features[k]["dtype"] not in ("video", "image")] + list(cams)
        per_ep = []
        for e, ep in enumerate(eps):
            sl = slice(starts[e], starts[e] + lengths[e])
            per_ep.append({k: feature_stats(ep[cams[k]], image=True) if k in cams else feature_stats(cols[k][sl]) for k in stat_keys})
        for k in stat_keys:
            for stat in per_ep[0][k]:
                ep_rows[f"stats/{k}/{stat}"] = [s[k][stat] for s in per_ep]
        _write_parquet(pa.table(ep_rows), tmp / EPISODES_PATH.format(chunk_index=0, file_index=0))
        stats = {k: feature_stats(np.concatenate([ep[cams[k]] for ep in eps]), image=True) if k in cams else feature_stats(cols[k])
                 for k in stat_keys}
        atomic_save_json(stats, tmp / "meta" / "stats.json")
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": robot_type or meta.task, "total_episodes": len(eps), "total_frames": N,
                "total_tasks": len(tasks), "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": fps,
                "splits": {"train": f"0:{len(eps)}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH if use_videos else None,
                "features": features}
        atomic_save_json(info, tmp / "meta" / "info.json")
        atomic_save_json({**asdict(meta), "episode_seeds": [int(ep[SEED]) if SEED in ep else None for ep in eps],
                          "cameras": cams}, tmp / SIDECAR)
    return out


def _png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- read
# Keys tried, in order, when a key is not set: the standard LeRobot names first, then the ones users' recordings use.
STATE_KEYS = ("observation.state", "state", "observation.states", "states")
ACTION_KEYS = ("action", "actions")
MISSING_NAMED = 8  # episode ids a partial-dataset warning names before "..."


def read_info(root: Path) -> dict:
    path = Path(root) / "meta" / "info.json"
    if not path.is_file():
        raise DemoImportError(f"{root} is not a LeRobot dataset: no meta/info.json")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DemoImportError(f"{path}: not valid JSON ({e})") from e
    for field in ("features", "fps"):
        if field not in info:
            raise DemoImportError(f"{path}: no {field!r} (has {sorted(info)})")
    return info


def open_lerobot(root: str | Path, **keys) -> "LeRobotDataset":
    """A LeRobot dataset folder, v2.x (one parquet and one video per episode, ``meta/*.jsonl``) or v3.x, read by
    the reader its ``codebase_version`` needs; ``keys`` are ``LeRobotDataset``'s arguments."""
    version = str(read_info(Path(root)).get("codebase_version", "?"))
    if version.startswith("v2"):
        from toto_robot.data.formats.lerobot_v21 import LeRobotV21Dataset

        return LeRobotV21Dataset(root, **keys)
    if version.startswith("v3"):
        return LeRobotDataset(root, **keys)
    raise DemoImportError(f"{root}: LeRobot codebase_version {version!r}; this project reads v2.0, v2.1 and v3.x")


def _image_hw(ft: dict) -> tuple[int, int]:
    """(height, width) of a camera feature: by its axis names when given (some recorders write [C, H, W]), else [H, W, C]."""
    shape, names = [int(n) for n in ft["shape"]], ft.get("names") or []
    names = [str(n).lower() for n in names] if len(names) == len(shape) and all(isinstance(n, str) for n in names) else []
    if "height" in names and "width" in names:
        return shape[names.index("height")], shape[names.index("width")]
    if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
        return shape[1], shape[2]
    return shape[0], shape[1]


class LeRobotDataset:
    """A LeRobot v3 dataset folder as episodes of the project's format: ``len(ds)``, ``ds[i]`` -> dict of arrays,
    ``ds.meta`` (``DemoMeta``), so behaviour cloning reads it as it reads a demo folder. ``LeRobotV21Dataset``
    (``lerobot_v21.py``) reads v2.x through the same code; ``open_lerobot`` picks the reader by version.

    Keys left as None are picked: the first camera, then the first of ``STATE_KEYS`` / ``ACTION_KEYS`` that
    the dataset has; one log line names what was picked. Episodes that ``meta/`` lists but whose data or video
    files are absent (a partial download) are left out and named in one warning (``ds.missing_episodes``)."""

    VERSION = "v3"

    def __init__(self, root: str | Path, image_key: str | None = None, wrist_image_key: str | None = None,
                 state_key: str | None = None, action_key: str | None = None, tolerance_s: float = 1e-4,
                 task: str | None = None, action_space: str | None = None, camera_keys: list[str] | str | None = None):
        self.root = Path(root)
        self.info = info = read_info(self.root)
        version = str(info.get("codebase_version", "?"))
        if not version.startswith(self.VERSION):
            raise DemoImportError(f"{self.root}: LeRobot codebase_version {version}; {type(self).__name__} reads {self.VERSION}.x "
                                  "(open_lerobot picks the reader by version)")
        self.features, self.fps, self.tolerance_s = info["features"], float(info["fps"]), tolerance_s
        side = self.root / SIDECAR
        self.sidecar = json.loads(side.read_text()) if side.is_file() else None
        self.tasks: dict[int, str] = self._read_tasks()
        listed = self._read_episodes()
        if not listed:
            raise DemoImportError(f"{self.root}: meta/ lists no episodes")
        self._columns = self._sample_columns()
        self._pick_keys(image_key, wrist_image_key, state_key, action_key)
        self._pick_cameras(camera_keys)
        self.episodes, missing = [], []
        for ep in listed:
            absent = [p for p in self.episode_files(ep) if not p.is_file()]
            if absent:
                missing.append((int(ep["episode_index"]), absent[0]))
            else:
                self.episodes.append(ep)
        self.missing_episodes = [i for i, _ in missing]
        if not self.episodes:
            i, path = missing[0]
            raise DemoImportError(f"{self.root}: none of the {len(listed)} episodes meta/ lists has its files "
                                  f"(episode {i} needs {path.relative_to(self.root)})")
        if missing:
            ids = ", ".join(str(i) for i, _ in missing[:MISSING_NAMED]) + (", ..." if len(missing) > MISSING_NAMED else "")
            log.warning("%s: %d of %d episodes listed in meta/ have no files here (partial dataset), left out: %s "
                        "(episode %d needs %s); importing the %d present", self.root, len(missing), len(listed), ids,
                        missing[0][0], missing[0][1].relative_to(self.root), len(self.episodes))
        self._wanted = [self.state_key, self.action_key, "episode_index", "frame_index", "timestamp", "next.reward", "next.success"]
        self._wanted += [k for k in self._camera_keys() if self.features[k]["dtype"] == "image"]
        self._data = None
        self._video_cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
        self._digests: dict[Path, bytes] = {}
        self._matched_by_order = False  # warned once that frames are matched in order, not by timestamp
        self.meta = self._make_meta(task, action_space)

    # ------------------------------------------------ what differs between v3 and v2.x (LeRobotV21Dataset overrides these)
    def _read_tasks(self) -> dict[int, str]:
        import pyarrow.parquet as pq

        path = self.root / "meta" / "tasks.parquet"
        if not path.is_file():
            return {}
        t = pq.read_table(path)
        name_col = "task" if "task" in t.column_names else "__index_level_0__"
        return dict(zip(t.column("task_index").to_pylist(), t.column(name_col).to_pylist()))

    def _read_episodes(self) -> list[dict]:
        """Every episode ``meta/`` lists (present or not), by ``episode_index``: at least ``episode_index`` and ``length``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        ep_files = sorted((self.root / "meta" / "episodes").glob("*/*.parquet"))
        if not ep_files:
            raise DemoImportError(f"{self.root}: missing meta/episodes/*/*.parquet")
        tables = [pq.read_table(f, columns=[c for c in pq.read_schema(f).names if not c.startswith("stats/")]) for f in ep_files]
        return pa.concat_tables(tables, promote_options="default").sort_by("episode_index").to_pylist()

    def _template_path(self, name: str, **fields) -> Path:
        template = self.info.get(name) or {"data_path": DATA_PATH, "video_path": VIDEO_PATH}[name]
        try:
            return self.root / template.format(**fields)
        except (KeyError, IndexError, ValueError) as e:
            raise DemoImportError(f"{self.root}: meta/info.json {name} {template!r} has a field this reader does not fill ({e}); "
                                  f"it fills {sorted(fields)}") from e

    def episode_files(self, ep: dict) -> list[Path]:
        """The files an episode's frames come from: its data parquet, then one video per camera read from a video."""
        files = [self._template_path("data_path", chunk_index=self._ep_field(ep, "data/chunk_index"),
                                     file_index=self._ep_field(ep, "data/file_index"))]
        return files + [self._video_location(k, ep)[0] for k in self._video_keys()]

    def _video_location(self, key: str, ep: dict) -> tuple[Path, float]:
        """The video file holding an episode's frames of camera ``key``, and the time in it where the episode starts."""
        return (self._template_path("video_path", video_key=key, chunk_index=self._ep_field(ep, f"videos/{key}/chunk_index"),
                                    file_index=self._ep_field(ep, f"videos/{key}/file_index")),
                float(self._ep_field(ep, f"videos/{key}/from_timestamp")))

    def _ep_field(self, ep: dict, name: str):
        if ep.get(name) is None:
            raise DemoImportError(f"{self.root}: meta/episodes has no {name!r} for episode {ep.get('episode_index')} "
                                  f"(columns: {sorted(k for k in ep)})")
        return ep[name]

    def _episode_table(self, e: int):
        """(table, rows): the data rows of episode ``e`` (a position in ``self.episodes``), in frame order."""
        if self._data is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            files = sorted({self.episode_files(ep)[0] for ep in self.episodes})
            tables = [pq.read_table(f, columns=[c for c in self._wanted if c in pq.read_schema(f).names]) for f in files]
            t = pa.concat_tables(tables, promote_options="default")
            ep = t.column("episode_index").to_numpy()
            order = np.lexsort((t.column("frame_index").to_numpy(), ep))
            self._data = t.take(order)
            self._ep_index = self._data.column("episode_index").to_numpy()
        return self._data, np.flatnonzero(self._ep_index == self.episodes[e]["episode_index"])

    # ------------------------------------------------ keys
    def _sample_columns(self) -> dict:
        """Column name -> arrow type of one data parquet (a key may be a column that info.json's features omit)."""
        import pyarrow.parquet as pq

        sample = next(iter(sorted((self.root / "data").rglob("*.parquet"))), None)
        if sample is None:
            raise DemoImportError(f"{self.root}: no data/**/*.parquet")
        schema = pq.read_schema(sample)
        return {name: schema.field(name).type for name in schema.names}

    def _camera_keys(self) -> list[str]:
        """Every camera feature read: the image, the wrist camera, then ``camera_keys``."""
        return [k for k in (self.image_key, self.wrist_image_key, *self.camera_keys) if k]

    def _video_keys(self) -> list[str]:
        return [k for k in self._camera_keys() if self.features[k]["dtype"] == "video"]

    def _pick_cameras(self, camera_keys) -> None:
        """``camera_keys``: more camera features stored beside ``image`` as ``<name>_image`` (``camera_field``); "all": every
        camera feature the image and wrist keys do not take."""
        cams = rgb_cameras(self.features)
        taken = {self.image_key, self.wrist_image_key}
        keys = [k for k in cams if k not in taken] if camera_keys == "all" else list(camera_keys or [])
        for key in keys:
            if key not in cams:
                raise DemoImportError(f"{self.root}: format.read.camera_keys names {key!r}, not a camera of this dataset; its cameras: {cams}")
        fields = extra_camera_fields(keys, bool(self.wrist_image_key), str(self.root))
        self.camera_keys = keys
        if keys:
            log.info("%s: also cameras %s, stored as %s", self.root, keys, fields)

    def _pick_keys(self, image_key, wrist_image_key, state_key, action_key) -> None:
        cams = rgb_cameras(self.features)
        known = sorted(set(self.features) | set(self._columns))
        if self.sidecar and not image_key:
            inv = {v: k for k, v in self.sidecar.get("cameras", {}).items()}
            image_key, wrist_image_key = inv.get(OBS_IMAGE), wrist_image_key or inv.get(OBS_WRIST_IMAGE)
        if image_key is None:
            if not cams:
                raise DemoImportError(f"{self.root}: no colour camera feature (dtype video or image, not a depth map) in meta/info.json")
            image_key = cams[0]
        for what, key in (("camera", image_key), ("wrist camera", wrist_image_key)):
            if key is not None and key not in self.features:
                raise DemoImportError(f"{self.root}: no feature {key!r} for the {what}; features: {sorted(self.features)}")
            if key is not None and key not in cams:
                kind = "depth map" if is_depth_map(self.features[key]) else f"{self.features[key]['dtype']} feature"
                raise DemoImportError(f"{self.root}: {key!r} is a {kind}, not a colour camera; colour cameras: {cams}")

        def pick(what: str, key: str | None, candidates: tuple[str, ...]) -> str:
            if key is not None:
                if key not in known:
                    raise DemoImportError(f"{self.root}: no feature {key!r} for the {what}; features and columns: {known}")
                return key
            for c in candidates:
                if c in known:
                    return c
            raise DemoImportError(f"{self.root}: none of {list(candidates)} for the {what}; features and columns: {known} "
                                  f"(set format.read.{what}_key)")

        self.image_key, self.wrist_image_key = image_key, wrist_image_key
        self.state_key, self.action_key = pick("state", state_key, STATE_KEYS), pick("action", action_key, ACTION_KEYS)
        log.info("%s: camera %s%s%s, state %s [%d], action %s [%d] (format.read.image_key, state_key, action_key choose others)",
                 self.root, image_key, f" of {cams}" if len(cams) > 1 else "", f", wrist camera {wrist_image_key}" if wrist_image_key else "",
                 self.state_key, self._dim(self.state_key), self.action_key, self._dim(self.action_key))

    def _dim(self, key: str) -> int:
        """Width of a vector feature: from info.json's shape, else from the data's list type or first row."""
        if key in self.features:
            return int(np.prod(self.features[key]["shape"]))
        import pyarrow as pa
        import pyarrow.parquet as pq

        typ = self._columns[key]
        if pa.types.is_fixed_size_list(typ):
            return int(typ.list_size)
        if not (pa.types.is_list(typ) or pa.types.is_large_list(typ)):
            return 1
        sample = next(iter(sorted((self.root / "data").rglob("*.parquet"))))
        return len(pq.read_table(sample, columns=[key]).column(key)[0].as_py())

    def _make_meta(self, task, action_space) -> DemoMeta:
        """The demo folder's meta: this project's own (the sidecar) for a dataset it exported, else read off info.json.
        A dataset of several tasks lists them all in ``extra["tasks"]`` (``task`` is the first, or the one given)."""
        size = _image_hw(self.features[self.image_key])
        if self.sidecar and tuple(self.sidecar["image_size"]) == size:
            meta = DemoMeta.from_json({k: v for k, v in self.sidecar.items() if k in DemoMeta.__dataclass_fields__})
        else:
            meta = DemoMeta(source="lerobot", task=task or (self.tasks.get(0) or self.root.name), image_size=size,
                            state_dim=self._dim(self.state_key), action_dim=self._dim(self.action_key),
                            fps=self.fps, action_space=action_space or "lerobot",
                            extra={"lerobot": str(self.root), "robot_type": self.info.get("robot_type"), "camera": self.image_key})
        if len(self.tasks) > 1:
            meta.extra = {**meta.extra, "tasks": [self.tasks[i] for i in sorted(self.tasks)]}
        return meta

    # ------------------------------------------------ episodes
    def __len__(self) -> int:
        return len(self.episodes)

    def episode_key(self, e: int) -> str:
        """An import ledger key for episode ``e``: its ``episode_index`` and the sha256 of the files it is read from, so
        that a rerun after more of a partial dataset arrives imports only the new episodes."""
        import hashlib

        h = hashlib.sha256()
        for f in self.episode_files(self.episodes[e]):
            if f not in self._digests:
                d = hashlib.sha256()
                with open(f, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        d.update(block)
                self._digests[f] = d.digest()
            h.update(str(f.relative_to(self.root)).encode() + b"\0" + self._digests[f])
        return f"{h.hexdigest()}:{self.episodes[e]['episode_index']}"

    def _column(self, t, key: str, rows: np.ndarray) -> np.ndarray:
        """One column's rows as [rows] (scalar features) or [rows, n] (vector features, fixed-size or plain lists)."""
        import pyarrow as pa

        values = t.column(key).take(rows).combine_chunks()
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or pa.types.is_fixed_size_list(values.type):
            flat = np.asarray(values.flatten().to_numpy(zero_copy_only=False))
            if len(rows) and len(flat) % len(rows):
                raise DemoImportError(f"{self.root}: {key} rows have different lengths ({len(flat)} values in {len(rows)} rows)")
            return flat.reshape(len(rows), -1)
        return np.asarray(values.to_numpy(zero_copy_only=False))

    def _timestamps(self, t, rows: np.ndarray) -> np.ndarray:
        """Seconds from the episode's start of each row: ``timestamp``, else ``frame_index / fps``."""
        if "timestamp" in t.column_names:
            return self._column(t, "timestamp", rows).astype(np.float64).reshape(-1)
        frame = self._column(t, "frame_index", rows) if "frame_index" in t.column_names else np.arange(len(rows))
        return frame.astype(np.float64).reshape(-1) / self.fps

    def _frames(self, key: str, e: int, rows, t) -> np.ndarray:
        ft, ep_index = self.features[key], self.episodes[e]["episode_index"]
        if ft["dtype"] == "image":
            from PIL import Image

            frames = []
            for item in t.column(key).take(rows).to_pylist():
                data = item.get("bytes") if item else None
                if data is None and item and item.get("path"):
                    data = (self.root / item["path"]).read_bytes()
                if data is None:
                    raise DemoImportError(f"{self.root}: episode {ep_index}: an empty {key} image")
                frames.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8))
            return np.stack(frames)
        path, start = self._video_location(key, self.episodes[e])
        if path not in self._video_cache:
            self._video_cache.clear()  # one decoded file at a time
            self._video_cache[path] = decode_video(path)
        frames, times = self._video_cache[path]
        query = start + self._timestamps(t, rows)
        if len(times) == 1:
            idx = np.zeros(len(query), int)
        else:
            idx = np.clip(np.searchsorted(times, query), 1, len(times) - 1)
            idx = np.where(np.abs(times[idx - 1] - query) <= np.abs(times[idx] - query), idx - 1, idx)
        err = np.abs(times[idx] - query)
        if (err > self.tolerance_s).any() and start == 0 and len(times) == len(query):
            # A file that is this episode alone with one frame per data row, whose timestamps are not the video's times
            # (recorders that log wall-clock times but encode at the nominal fps): row k is frame k.
            if not self._matched_by_order:
                log.warning("%s: the timestamp column is not the video's frame times (episode %d: up to %.3f s apart); each "
                            "episode's video holds one frame per data row, so frames are matched in order", self.root, ep_index,
                            float(np.abs(times - query).max()))
                self._matched_by_order = True
            return frames
        if (err > self.tolerance_s).any():
            i = int(np.argmax(err > self.tolerance_s))
            raise DemoImportError(f"{path}: episode {ep_index} frame {i} is wanted at {query[i]:.4f} s, the nearest frame is at {times[idx[i]]:.4f} s "
                                  f"(tolerance {self.tolerance_s} s): timestamps and video are out of sync")
        if len(idx) == len(frames) and (idx == np.arange(len(idx))).all():
            return frames  # the whole file is this episode (v2.x): no copy
        return frames[idx]

    def _episode_arrays(self, e: int) -> dict:
        t, rows = self._episode_table(e)
        ep_meta = self.episodes[e]
        ep_index = ep_meta["episode_index"]
        for key in (self.state_key, self.action_key):
            if key not in t.column_names:
                raise DemoImportError(f"{self.root}: episode {ep_index}: no data column {key!r} (has {t.column_names})")
        if "length" in ep_meta and len(rows) != ep_meta["length"]:
            raise DemoImportError(f"{self.root}: episode {ep_index} has {len(rows)} frames in data/, meta/ says {ep_meta['length']}")
        ep = {OBS_IMAGE: self._frames(self.image_key, e, rows, t),
              OBS_STATE: self._column(t, self.state_key, rows).astype(np.float32).reshape(len(rows), -1),
              ACTION: self._column(t, self.action_key, rows).astype(np.float32).reshape(len(rows), -1)}
        if self.wrist_image_key:
            ep[OBS_WRIST_IMAGE] = self._frames(self.wrist_image_key, e, rows, t)
        for key in self.camera_keys:
            ep[camera_field(key)] = self._frames(key, e, rows, t)
        ep[REWARD] = (self._column(t, "next.reward", rows).astype(np.float32).reshape(-1) if "next.reward" in t.column_names
                      else np.zeros(len(rows), np.float32))
        ep[SUCCESS] = np.asarray(bool(self._column(t, "next.success", rows).any()) if "next.success" in t.column_names else False)
        seeds = self.sidecar.get("episode_seeds", []) if self.sidecar else []
        if ep_index < len(seeds) and seeds[ep_index] is not None:
            ep[SEED] = np.asarray(seeds[ep_index], np.int64)
        tasks = ep_meta.get("tasks") or []
        if tasks and not (self.sidecar and tasks == [self.sidecar.get("task")]):
            ep[LANGUAGE] = np.asarray(" | ".join(tasks))
        return ep

    def __getitem__(self, e: int) -> dict:
        ep = self._episode_arrays(e)
        where = f"{self.root} episode {self.episodes[e]['episode_index']}"
        for key in (OBS_STATE, ACTION):
            bad = ~np.isfinite(ep[key]).all(axis=1)
            if bad.any():
                raise DemoImportError(f"{where}: {key} ({getattr(self, key + '_key', key)}) has NaN/inf at frame {int(np.argmax(bad))}")
        validate_episode(ep, self.meta, where=where)
        return ep

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def episode(self, e: int) -> Episode:
        ep = self._episode_arrays(e)
        return Episode(ep[OBS_IMAGE], ep[OBS_STATE], ep[ACTION], ep[REWARD], bool(ep[SUCCESS]), ep.get(OBS_WRIST_IMAGE),
                       int(ep[SEED]) if SEED in ep else None, str(ep[LANGUAGE]) if LANGUAGE in ep else None,
                       {camera_field(k): ep[camera_field(k)] for k in self.camera_keys} or None)


@dataclass
class LeRobotImportConfig:
    src: str
    out_dir: str
    image_key: str | None = None
    wrist_image_key: str | None = None
    camera_keys: list[str] | str | None = None  # more cameras stored as <name>_image ("all": every other camera)
    state_key: str | None = None  # None: the first of STATE_KEYS the dataset has
    action_key: str | None = None  # None: the first of ACTION_KEYS
    tolerance_s: float = 1e-4
    task: str | None = None
    action_space: str | None = None
    image_size: int | None = None
    skip_bad: bool = False


def import_lerobot(cfg: LeRobotImportConfig) -> dict:
    """LeRobot v2.x or v3 folder -> demo folder, one ledger unit per episode (keyed by its index and its files' content).
    The ledger records the keys the reader picked, so a rerun that would pick others is refused."""
    ds = open_lerobot(cfg.src, image_key=cfg.image_key, wrist_image_key=cfg.wrist_image_key, state_key=cfg.state_key,
                      action_key=cfg.action_key, tolerance_s=cfg.tolerance_s, task=cfg.task, action_space=cfg.action_space,
                      camera_keys=cfg.camera_keys)
    units = [Unit(ds.episode_key(e), f"{ds.root} episode {ds.episodes[e]['episode_index']}", lambda e=e: iter([ds.episode(e)]))
             for e in range(len(ds))]
    options = {k: v for k, v in asdict(cfg).items() if k not in ("src", "out_dir", "skip_bad")}
    options.update(image_key=ds.image_key, wrist_image_key=ds.wrist_image_key, camera_keys=ds.camera_keys, state_key=ds.state_key, action_key=ds.action_key,
                   unit_key="episode files")
    summary = run_import(units, cfg.out_dir, "lerobot", options, lambda ep: ds.meta, cfg.image_size, cfg.skip_bad)
    if ds.missing_episodes:
        summary["source_episodes_without_files"] = ds.missing_episodes
        atomic_save_json(summary, Path(cfg.out_dir) / SUMMARY_NAME)
    return summary
