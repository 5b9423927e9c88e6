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
from toto_robot.data.demos import DemoDataset, DemoMeta
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

    def __post_init__(self):
        from toto_robot.utils.config import check_choice, check_number

        check_choice(self.action_from, "format.read.action_from", ("topic", "next_state", "next_state_delta"))
        check_choice(self.stamps, "format.read.stamps", ("header", "log"))
        check_choice(self.state_align, "format.read.state_align", ("latest", "nearest"))
        self.tolerance_s = check_number(self.tolerance_s, "format.read.tolerance_s", low=0, low_open=True)
        if self.gap_s is not None:
            self.gap_s = check_number(self.gap_s, "format.read.gap_s", low=0, low_open=True)


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


def _pick(topics: dict[str, str], wanted: str | None, types: tuple[str, ...], what: str, hints: tuple[str, ...], where: str,
          exclude: tuple[str | None, ...] = ()) -> str:
    if wanted:
        name = wanted if wanted.startswith("/") else "/" + wanted
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


def read_bag(path: Path, cfg: RosbagImportConfig) -> tuple[dict[str, Stream], dict, dict]:
    """The chosen topics of one bag as time-sorted streams, plus the chosen topic names and the bag's custom data."""
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
        chosen = {"image": _pick(topics, cfg.image_topic, IMAGE_TYPES, "camera", ("image", "color", "rgb"), where)}
        chosen["state"] = _pick(topics, cfg.state_topic, STATE_TYPES, "state", ("state", "joint", "pose"), where)
        if cfg.action_from == "topic":
            chosen["action"] = _pick(topics, cfg.action_topic, ACTION_TYPES, "action", ("action", "cmd", "command"), where,
                                     exclude=(chosen["state"],))
        if cfg.episode_topic:
            chosen["episode"] = _pick(topics, cfg.episode_topic, EPISODE_TYPES, "episode end", (), where)
        by_topic = {t: k for k, t in chosen.items()}
        raw: dict[str, list] = {k: [] for k in chosen}
        joint_order = {"state": None, "action": None}
        conns = [c for c in reader.connections if c.topic in by_topic]
        counts = {k: 0 for k in chosen}
        for conn, log_ns, data in reader.messages(connections=conns):
            kind = by_topic[conn.topic]
            i = counts[kind]
            counts[kind] += 1
            msg = reader.deserialize(data, conn.msgtype)
            t = _stamp_ns(msg, log_ns, cfg.stamps)
            here = f"{where} {conn.topic} message {i}"
            if kind == "image":
                try:
                    img = compressed_msg_to_array(msg) if conn.msgtype.endswith("CompressedImage") else image_msg_to_array(msg)
                except ImageEncodingError as e:
                    raise DemoImportError(f"{here}: {e}") from e
                raw[kind].append((t, img))
            elif kind == "episode":
                raw[kind].append((t, bool(getattr(msg, "data", cfg.success))))
            else:
                vec, joint_order[kind] = _vector(msg, conn.msgtype, joint_order[kind], here)
                if not np.isfinite(vec).all():
                    raise DemoImportError(f"{here} (t={t / 1e9:.3f} s): NaN/inf in {_short(conn.msgtype)}: {vec}")
                raw[kind].append((t, vec))
        storage = getattr(reader.readers[0], "storage", None)  # rosbags keeps metadata.yaml custom_data there
        custom = dict(getattr(getattr(storage, "metadata", None), "custom", None) or {})
    finally:
        reader.close()
    for kind, topic in chosen.items():
        if kind != "episode" and not raw[kind]:
            raise DemoImportError(f"{where}: topic {topic} ({kind}) has no messages")
    streams = {}
    for kind, items in raw.items():
        items.sort(key=lambda x: x[0])
        streams[kind] = Stream(np.array([t for t, _ in items], np.int64), [v for _, v in items])
        if kind in ("state", "action"):
            dims = {len(v) for v in streams[kind].values}
            if len(dims) > 1:
                raise DemoImportError(f"{where}: {chosen[kind]} messages have different lengths {sorted(dims)}")
        if kind == "image":
            shapes = {v.shape for v in streams[kind].values}
            if len(shapes) > 1:
                raise DemoImportError(f"{where}: {chosen[kind]} frames have different sizes {sorted(shapes)}")
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


def align_episode(streams: dict, chosen: dict, lo: int, hi: int, start_t: int, end_t: int | None, period_ns: int,
                  cfg: RosbagImportConfig, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """Frames lo..hi-1 with their state and action (see module doc). Returns (image, state, action, dropped) or None if too short."""
    tf = streams["image"].times[lo:hi]
    tol = int(round(cfg.tolerance_s * 1e9))
    st = streams["state"]
    s_ok = st.times > start_t
    s_times, s_vals = st.times[s_ok], [v for v, k in zip(st.values, s_ok) if k]
    n = len(tf)
    if cfg.state_align == "nearest":
        j, gap = _nearest(s_times, tf)
    else:  # latest: the last state at or before the frame (what the ROS demo recorder pairs a frame with)
        j = np.searchsorted(s_times, tf, side="right") - 1
        gap = np.where(j >= 0, tf - s_times[np.maximum(j, 0)] if len(s_times) else np.inf, np.inf)
    state_idx = np.where(gap <= tol, j, -1)
    action_idx = np.zeros(n, int)
    if cfg.action_from == "topic":
        ac = streams["action"]
        a_ok = ac.times > start_t
        a_times = ac.times[a_ok]
        a_pos = np.flatnonzero(a_ok)
        nxt = np.append(tf[1:], end_t if end_t is not None else tf[-1] + period_ns)
        k = np.searchsorted(a_times, nxt, side="left") - 1  # last action strictly before the next frame
        valid = (k >= 0)
        stale = np.zeros(n, bool)
        stale[valid] = tf[valid] - a_times[k[valid]] > tol
        action_idx = np.where(valid & ~stale, a_pos[np.maximum(k, 0)], -1)
    ok = (state_idx >= 0) & (action_idx >= 0)
    first = int(np.argmax(ok)) if ok.any() else n
    if not ok[first:].all():
        i = first + int(np.argmax(~ok[first:]))
        if state_idx[i] < 0:
            raise DemoImportError(f"{where}: unsynchronised stamps: camera frame {lo + i} at {tf[i] / 1e9:.3f} s has no state on "
                                  f"{chosen['state']} within {cfg.tolerance_s} s ({cfg.state_align} one is {gap[i] / 1e9:.3f} s away)")
        raise DemoImportError(f"{where}: unsynchronised stamps: camera frame {lo + i} at {tf[i] / 1e9:.3f} s has no action on "
                              f"{chosen['action']} issued before the next frame and at most {cfg.tolerance_s} s old")
    keep = np.arange(first, n)
    if cfg.action_from != "topic":
        keep = keep[:-1]  # the last frame has no next state
    if len(keep) < cfg.min_frames:
        return None
    image = np.stack([streams["image"].values[lo + i] for i in keep])
    state = np.stack([s_vals[state_idx[i]] for i in keep]).astype(np.float32)
    if cfg.action_from == "topic":
        action = np.stack([streams["action"].values[action_idx[i]] for i in keep]).astype(np.float32)
    else:
        nxt_state = np.stack([s_vals[state_idx[i + 1]] for i in keep]).astype(np.float32)
        action = nxt_state - state if cfg.action_from == "next_state_delta" else nxt_state
    return image, state, action, first


def bag_episodes(path: Path, cfg: RosbagImportConfig, info: dict) -> Iterator[Episode]:
    streams, chosen, custom = read_bag(path, cfg)
    frames = streams["image"].times
    period = int(np.median(np.diff(frames))) if len(frames) > 1 else int(1e9 / (cfg.fps or 10.0))
    info.setdefault("fps", cfg.fps or (round(1e9 / period, 3) if period > 0 else 10.0))
    info.setdefault("topics", chosen)
    info.setdefault("custom", custom)
    seeds = json.loads(custom[SEEDS_KEY]) if SEEDS_KEY in custom else []
    for e, (lo, hi, start_t, end_t, success) in enumerate(_episode_windows(frames, streams, cfg)):
        if hi - lo == 0:
            continue
        where = f"{path} episode {e}"
        got = align_episode(streams, chosen, lo, hi, start_t, end_t, period, cfg, where)
        if got is None:
            log.info("%s: %d frames, fewer than min_frames=%d; skipped", where, hi - lo, cfg.min_frames)
            continue
        image, state, action, dropped = got
        if dropped:
            log.info("%s: dropped %d leading frames without a state or action yet", where, dropped)
        yield Episode(image, state, action, None, success, seed=seeds[e] if e < len(seeds) else None)


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
        return DemoMeta(source="rosbag2", task=cfg.task or Path(cfg.src).name, image_size=tuple(ep.image.shape[1:3]),
                        state_dim=ep.state.shape[1], action_dim=ep.action.shape[1], fps=float(info["fps"]),
                        action_space=cfg.action_space or ("state" if cfg.action_from == "next_state" else
                                                          "state_delta" if cfg.action_from == "next_state_delta" else "ros"),
                        extra={"topics": topics, "tolerance_s": cfg.tolerance_s, "stamps": cfg.stamps})

    options = {k: v for k, v in asdict(cfg).items() if k not in ("src", "out_dir", "skip_bad")}
    return run_import(units, cfg.out_dir, "rosbag2", options, make_meta, cfg.image_size, cfg.skip_bad)


# ---------------------------------------------------------------- export
def export_rosbag2(demos: str | Path, out: str | Path, storage: str = "mcap", image_topic: str = "/camera/image_raw",
                   state_topic: str = "/robot/state", action_topic: str = "/toto/action", episode_topic: str = "/sim/episode_done",
                   start_time_s: float = 1.7e9, episode_gap_s: float = 1.0) -> Path:
    """A demo folder -> a rosbag2 at ``out`` (written under a hidden name, then renamed into place).

    Step t of an episode starting at time T0 is state then image (stamped) at T0 + t/fps and the
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
            for i in tqdm(range(len(ds)), desc="export rosbag2", unit="ep"):
                ep = ds[i]
                seeds.append(int(ep[SEED]) if SEED in ep else None)
                languages += LANGUAGE in ep
                H, W = ep[OBS_IMAGE].shape[1:3]
                for t in range(len(ep[OBS_IMAGE])):
                    now = t0 + t * period
                    w.write(c_state, now, arr_msg(ep[OBS_STATE][t]))
                    stamp = Time(sec=(now + 1) // 1_000_000_000, nanosec=(now + 1) % 1_000_000_000)
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
