"""Shared test setup: headless rendering, an isolated ROS 2 domain per worker, small thread counts."""
import os
import random
import tempfile

# Must be set before mujoco / rclpy are imported anywhere.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
# Always this run's own domain, whatever the shell says: tests publish motion commands, never onto a user's robots,
# and two test workers (or two runs) never hear each other's topics.
os.environ["ROS_DOMAIN_ID"] = str(100 + int(_worker.lstrip("gw") or 0) + (os.getpid() % 50) * 2)
os.environ["ROS_LOCALHOST_ONLY"] = "1"  # before Jazzy
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # Jazzy and after
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# The Fast DDS profile the ROS nodes use (full-size camera frames); child processes inherit it.
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(os.path.dirname(__file__), "..", "toto_robot", "ros", "fastdds_profile.xml"))
# hydra's run folders (runs/<command>/<time>/) of the jobs tests start go to a temporary folder, not the checkout
os.environ["TOTO_ROBOT_RUNS"] = tempfile.mkdtemp(prefix=f"toto-robot-runs-{_worker}-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _ordinary_scheduling():
    """Every test starts on Linux's ordinary time-sharing policy. A test worker's main thread was found running
    SCHED_FIFO at priority 99 part way through a full run (set by native code some earlier test loaded; not by
    this project): every process a later test starts inherits it, and two real-time torchrun ranks that busy-wait
    on gloo then starve the rest of a 2-core machine, their own decoding workers included, until a timeout."""
    if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) != os.SCHED_OTHER:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    yield


@pytest.fixture
def ros():
    """A private rclpy context with one executor: ``(ctx, add(node) -> node, spin_until(cond, timeout) -> bool)``;
    every node added is closed and destroyed afterwards."""
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    nodes = []

    def add(node):
        nodes.append(node)
        ex.add_node(node)
        return node

    def spin_until(cond, timeout=30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            ex.spin_once(timeout_sec=0.02)
        return cond()

    yield ctx, add, spin_until
    for n in nodes:
        if hasattr(n, "close"):
            n.close()
        n.destroy_node()
    rclpy.shutdown(context=ctx)
