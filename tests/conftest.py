"""Shared test setup: headless rendering, an isolated ROS 2 domain per worker, small thread counts."""
import os
import random

# Must be set before mujoco / rclpy are imported anywhere.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + int(_worker.lstrip("gw") or 0) + (os.getpid() % 50) * 2))
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# The Fast DDS profile the ROS nodes use (full-size camera frames); child processes inherit it.
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(os.path.dirname(__file__), "..", "toto_robot", "ros", "fastdds_profile.xml"))
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
