"""Helpers shared by the nodes: parameters with defaults, sensor QoS, state messages, a latest-frame
worker thread, and running a node until shutdown."""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy


def declare(node: Node, defaults: dict) -> dict:
    """Declare every parameter with its default; return their current values (overrides applied)."""
    for name, value in defaults.items():
        node.declare_parameter(name, value)
    return {name: node.get_parameter(name).value for name in defaults}


def sensor_qos(depth: int = 1) -> QoSProfile:
    """Camera streams: keep only the newest frame, best effort (stale frames are dropped, not queued).
    Matches both reliable and best-effort publishers."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)


def state_from_msg(msg) -> np.ndarray:
    """std_msgs/Float32MultiArray -> its data; sensor_msgs/JointState -> [position, velocity, effort].
    Raises ValueError on NaN/inf (a broken joint-state publisher must not reach a policy)."""
    if hasattr(msg, "position"):
        x = np.concatenate([np.asarray(msg.position, np.float32), np.asarray(msg.velocity, np.float32), np.asarray(msg.effort, np.float32)])
    else:
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
    raise ValueError(f"state_msg_type must be 'array' (std_msgs/Float32MultiArray) or 'joint_state' (sensor_msgs/JointState), got {kind!r}")


class StateSubscriber:
    """Mixin for nodes that keep the latest robot state: ``self.state`` (None until a valid message)."""

    state: np.ndarray | None = None

    def on_state(self, msg) -> None:
        try:
            self.state = state_from_msg(msg)
        except ValueError as e:
            self.get_logger().error(f"dropping state: {e}", throttle_duration_sec=5.0)


class LatestWorker:
    """Runs ``handler(item)`` on a background thread for the newest submitted item only, so a slow
    model never blocks the executor and never works through a backlog. Keeps latency/rate stats."""

    def __init__(self, handler, name: str = "worker"):
        self.handler = handler
        self._item, self._cv, self._stop = None, threading.Condition(), False
        self.latencies: deque[float] = deque(maxlen=200)
        self.done_times: deque[float] = deque(maxlen=200)
        self.processed = self.replaced = 0
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def submit(self, item) -> None:
        with self._cv:
            if self._item is not None:
                self.replaced += 1  # the previous frame was never processed: it went stale
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
            t0 = time.perf_counter()
            self.handler(item)
            self.latencies.append(time.perf_counter() - t0)
            self.done_times.append(time.monotonic())
            self.processed += 1

    def rate_hz(self) -> float:
        t = list(self.done_times)
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def mean_latency_ms(self) -> float:
        return 1000 * float(np.mean(self.latencies)) if self.latencies else float("nan")

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self.thread.join(timeout=5)


def spin(node_cls, args=None) -> None:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = node_cls()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close() if hasattr(node, "close") else None
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
