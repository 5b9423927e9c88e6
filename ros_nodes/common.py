"""Helpers shared by the nodes: parameters with defaults, camera QoS, state messages, a latest-frame
worker thread that survives any error, stream statistics published as diagnostics, and running a
node until shutdown."""
from __future__ import annotations

import threading
import time
import traceback
from collections import deque

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy


class ConfigError(ValueError):
    """Parameters that cannot work together; the node refuses to start and says why."""


def declare(node: Node, defaults: dict) -> dict:
    """Declare every parameter with its default; return their current values (overrides applied).
    An empty list default declares a string array (rclpy would otherwise type ``[]`` as bytes)."""
    values = {}
    for name, value in defaults.items():
        if isinstance(value, list) and not value:
            from rclpy.exceptions import ParameterUninitializedException

            node.declare_parameter(name, Parameter.Type.STRING_ARRAY)
            try:
                v = node.get_parameter(name).value
            except ParameterUninitializedException:  # no override given: the empty default
                v = None
            values[name] = list(v) if v is not None else []
        else:
            node.declare_parameter(name, value)
            v = node.get_parameter(name).value
            values[name] = list(v) if isinstance(value, list) else v
    return values


RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def apply_precision(encoder, precision: str) -> None:
    """The nodes' ``precision`` parameter: "" keeps the encoder's own, otherwise ``encoder.set_precision`` (a bad value is a
    ConfigError naming the choices)."""
    if precision:
        try:
            encoder.set_precision(precision)
        except ValueError as e:
            raise ConfigError(str(e)) from e


def camera_qos(depth: int = 10, reliability: str = "best_effort") -> QoSProfile:
    """Camera streams. ``best_effort`` matches both best-effort (sensor-data) and reliable publishers;
    ``reliable`` asks a reliable publisher to resend lost fragments (and matches only reliable ones).
    The depth is the reader's buffer while the executor is busy: with depth 1 a frame that arrives
    before the previous one was taken silently replaces it. The worker still acts on the newest frame
    only, so a deeper queue never adds latency; skipped frames are counted as stale."""
    if reliability not in RELIABILITY:
        raise ConfigError(f"qos_reliability must be one of {', '.join(RELIABILITY)}, got {reliability!r}")
    if depth < 1:
        raise ConfigError(f"qos_depth must be >= 1, got {depth}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=RELIABILITY[reliability])


def state_from_msg(msg) -> np.ndarray:
    """std_msgs/Float32MultiArray -> its data. Raises ValueError on NaN/inf (a broken state publisher
    must not reach a policy)."""
    x = np.asarray(msg.data, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"state message contains NaN/inf: {x}")
    return x


def state_msg_class(kind: str):
    if kind == "array":
        from std_msgs.msg import Float32MultiArray

        return Float32MultiArray
    if kind == "joint_state":
        from sensor_msgs.msg import JointState

        return JointState
    raise ConfigError(f"state_msg_type must be 'array' (std_msgs/Float32MultiArray) or 'joint_state' (sensor_msgs/JointState), got {kind!r}")


class Proprioception:
    """The robot state a policy reads, from ``state_msg_type`` (``array``: std_msgs/Float32MultiArray on
    ``state_topic``; ``joint_state``: sensor_msgs/JointState on ``state_topic`` mapped by ``joint_names``
    and ``gripper_joint_names``, plus the xyz of geometry_msgs/PoseStamped on ``pose_topic`` if set).
    Subscribes on ``node``; ``on_update`` runs after each accepted message. A message with NaN/inf is
    refused (logged) and the last good state kept."""

    def __init__(self, node: Node, p: dict, on_update=None, qos_depth: int = 10):
        from toto_robot.ros import control

        self.node, self.p, self.on_update, self.control = node, p, on_update, control
        kind = p["state_msg_type"]
        cls = state_msg_class(kind)
        self.array: np.ndarray | None = None
        self.joints = None
        if kind == "joint_state":
            if not p["joint_names"]:
                raise ConfigError("state_msg_type:=joint_state needs joint_names (the arm joints in the policy's state order)")
            try:
                self.joints = control.JointStateMapper(p["joint_names"], p["gripper_joint_names"])
            except control.ControlError as e:
                raise ConfigError(str(e)) from e
        elif p["pose_topic"]:
            raise ConfigError("pose_topic is read only with state_msg_type:=joint_state (an array state already holds everything)")
        self.pose: np.ndarray | None = None
        self.pose_stamp = -1
        node.create_subscription(cls, p["state_topic"], self.on_state, qos_depth)
        if p["pose_topic"]:
            from geometry_msgs.msg import PoseStamped

            node.create_subscription(PoseStamped, p["pose_topic"], self.on_pose, qos_depth)

    @property
    def dim(self) -> int | None:
        """Length of the state vector (None for an array: known at the first message)."""
        return None if self.joints is None else self.joints.dim + (3 if self.p["pose_topic"] else 0)

    @property
    def vector(self) -> np.ndarray | None:
        if self.joints is None:
            return self.array
        q = self.joints.vector()
        if q is None or (self.p["pose_topic"] and self.pose is None):
            return None
        return np.concatenate([q, self.pose]) if self.p["pose_topic"] else q

    @property
    def stamp(self) -> int | None:
        """ns of the oldest part of a stamped state (None for an unstamped array)."""
        if self.joints is None:
            return None
        return min(self.joints.stamp, self.pose_stamp) if self.p["pose_topic"] else self.joints.stamp

    def missing(self) -> list[str]:
        out = self.joints.missing() if self.joints is not None else []
        return out + ([self.p["pose_topic"]] if self.p["pose_topic"] and self.pose is None else [])

    def on_state(self, msg) -> None:
        try:
            if self.joints is None:
                self.array = state_from_msg(msg)
            else:
                self.joints.update(msg)
        except ValueError as e:
            self.node.get_logger().error(f"dropping state: {e}", throttle_duration_sec=5.0)
            return
        if self.on_update:
            self.on_update()

    def on_pose(self, msg) -> None:
        try:
            self.pose = self.control.pose_position(msg)
            self.pose_stamp = self.control.stamp_ns(msg.header.stamp)
        except ValueError as e:
            self.node.get_logger().error(f"dropping pose: {e}", throttle_duration_sec=5.0)
            return
        if self.on_update:
            self.on_update()


class StreamStats:
    """Counts for one input stream and the work done on it, shared between the executor and a worker.

    ``lost``: frames a publisher sent that never reached the callback, from gaps in its publication
    sequence numbers (transport loss, or a full reader queue); ``stale``: frames received but skipped
    because a newer one arrived before the worker was free; ``unreadable``: refused frames (encoding,
    size); ``errors``: any other exception while processing. Latency is from the frame's header
    stamp to the output being published (same clock on one machine)."""

    def __init__(self, window: int = 300):
        self.lock = threading.Lock()
        self.received = self.lost = self.stale = self.processed = self.unreadable = self.errors = 0
        self.latency_ms: deque[float] = deque(maxlen=window)
        self.work_ms: deque[float] = deque(maxlen=window)
        self.done_times: deque[float] = deque(maxlen=window)
        self._last_seq: dict[bytes, int] = {}
        self.last_error = ""

    def on_receive(self, info) -> None:
        """Call from a subscription callback with its MessageInfo (rclpy passes it to two-argument callbacks)."""
        with self.lock:
            self.received += 1
            seq = info.get("publication_sequence_number") if info else None
            if seq is None:
                return
            gid = info.get("publisher_gid")
            key = bytes(gid["data"]) if isinstance(gid, dict) and "data" in gid else b""
            last = self._last_seq.get(key)
            if last is not None and seq > last + 1:
                self.lost += seq - last - 1
            if last is None or seq > last:
                self._last_seq[key] = seq

    def on_done(self, stamp_ns: int | None, now_ns: int, work_s: float) -> None:
        with self.lock:
            self.processed += 1
            self.work_ms.append(1000 * work_s)
            self.done_times.append(time.monotonic())
            if stamp_ns:
                self.latency_ms.append((now_ns - stamp_ns) / 1e6)

    def rate_hz(self, horizon_s: float = 5.0) -> float:
        with self.lock:
            now = time.monotonic()
            t = [x for x in self.done_times if now - x <= horizon_s]
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def snapshot(self) -> dict:
        with self.lock:
            lat, work = np.array(self.latency_ms), np.array(self.work_ms)
            out = {"frames_received": self.received, "frames_lost": self.lost, "frames_stale": self.stale,
                   "frames_processed": self.processed, "frames_unreadable": self.unreadable, "errors": self.errors,
                   "last_error": self.last_error}
        out["rate_hz"] = self.rate_hz()
        for name, x in (("latency", lat), ("processing", work)):
            out[f"{name}_median_ms"] = float(np.median(x)) if x.size else float("nan")
            out[f"{name}_p95_ms"] = float(np.percentile(x, 95)) if x.size else float("nan")
            out[f"{name}_max_ms"] = float(x.max()) if x.size else float("nan")
        return out


class LatestWorker:
    """Runs ``handler(item)`` on a background thread for the newest submitted item only, so a slow
    model never blocks the executor and never works through a backlog.

    Never dies silently: an exception in ``bad_input`` counts the item as unreadable and logs one
    line; any other exception is logged with its traceback, counted in ``stats.errors``, and the
    worker goes on with the next item."""

    def __init__(self, handler, stats: StreamStats, logger, name: str = "worker", bad_input: tuple = ()):
        self.handler, self.stats, self.logger, self.name, self.bad_input = handler, stats, logger, name, bad_input
        self._item, self._cv, self._stop = None, threading.Condition(), False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    @property
    def processed(self) -> int:
        return self.stats.processed

    def submit(self, item) -> None:
        with self._cv:
            if self._item is not None:
                with self.stats.lock:
                    self.stats.stale += 1  # the previous frame was never processed: it went stale
            self._item = item
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._item is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                item, self._item = self._item, None
            try:
                self.handler(item)
            except self.bad_input as e:
                with self.stats.lock:
                    self.stats.unreadable += 1
                self.logger.error(f"dropping frame: {e}", throttle_duration_sec=5.0)
            except Exception as e:  # noqa: BLE001 - the worker must survive anything; it is counted and logged
                with self.stats.lock:
                    self.stats.errors += 1
                    self.stats.last_error = f"{type(e).__name__}: {e}"
                self.logger.error(f"{self.name}: {type(e).__name__} while processing a frame (the node goes on; "
                                  f"{self.stats.errors} so far):\n{traceback.format_exc()}", throttle_duration_sec=5.0)

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self.thread.join(timeout=5)


class Diagnostics:
    """Publishes a node's StreamStats as diagnostic_msgs/DiagnosticArray on ``/diagnostics`` (the topic
    rqt_robot_monitor and diagnostic_aggregator read) every ``period_s``. Level ERROR when errors
    occurred since the last report, WARN when frames were lost or unreadable, or none was processed
    although frames arrived; OK otherwise. ``more() -> [DiagnosticStatus]`` adds the node's own statuses
    (the policy node's OOD monitor) to every report."""

    def __init__(self, node: Node, stats: StreamStats, period_s: float, name: str, hardware_id: str = "", extra=None, more=None):
        from diagnostic_msgs.msg import DiagnosticArray

        self.node, self.stats, self.name, self.hardware_id, self.extra, self.more = node, stats, name, hardware_id, extra, more
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._prev = stats.snapshot()
        self.reports = 0
        self.timer = node.create_timer(period_s, self.publish) if period_s > 0 else None

    def status(self):
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        s, prev = self.stats.snapshot(), self._prev
        d = {k: s[k] - prev[k] for k in ("frames_received", "frames_lost", "frames_processed", "frames_unreadable", "errors")}
        if d["errors"]:
            level, message = DiagnosticStatus.ERROR, f"{d['errors']} errors since the last report: {s['last_error']}"
        elif d["frames_lost"] or d["frames_unreadable"]:
            level, message = DiagnosticStatus.WARN, f"{d['frames_lost']} frames lost, {d['frames_unreadable']} unreadable since the last report"
        elif d["frames_received"] and not d["frames_processed"]:
            level, message = DiagnosticStatus.WARN, "frames arrive but none was processed"
        else:
            level, message = DiagnosticStatus.OK, f"{s['rate_hz']:.1f} Hz, latency median {s['latency_median_ms']:.1f} ms"
        self._prev = s
        values = {k: v for k, v in s.items() if k != "last_error"}
        if self.extra is not None:
            values.update(self.extra())
        kv = [KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in values.items()]
        return DiagnosticStatus(level=level, name=self.name, message=message, hardware_id=self.hardware_id, values=kv)

    def publish(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        msg = DiagnosticArray(status=[self.status(), *(self.more() if self.more is not None else [])])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)
        self.reports += 1


def spin(node_cls, args=None) -> None:
    """Run a node until Ctrl-C / SIGTERM. The project's Fast DDS profile is put in force first (unless
    the user set their own); parameters the node refuses end the process with one clear line, exit 2."""
    import sys

    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.logging import get_logger

    from toto_robot.ros.dds import use_profile

    use_profile()
    rclpy.init(args=args)
    try:
        node = node_cls()
    except ConfigError as e:
        get_logger(getattr(node_cls, "NODE_NAME", node_cls.__name__)).fatal(f"refusing to start: {e}")
        rclpy.try_shutdown()
        sys.exit(2)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close() if hasattr(node, "close") else None
        node.destroy_node()
        rclpy.try_shutdown()
