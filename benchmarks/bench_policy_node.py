"""The policy node at camera rate with several cameras, over real ROS 2 (rclpy + Fast DDS): one stand-in camera
process per view (``toto_robot.ros_nodes.synthetic_camera``, 640x480 rgb8, best effort, ``--hz``), a state
publisher, and ``toto_policy_node`` in this process acting once per front frame on a policy with the
Toto-tiny shape that reads every camera (chunks of ``--chunk`` with ACT's temporal ensembling). For each
policy it prints the commands per second against the front frames sent, frames the node could not pair
across cameras, latency from the front frame's stamp to the command (median / p95 / max) and this
process's CPU; the one-camera policy runs first in the same process as the reference, and the ratios
of the multi-camera run to it end the output.

    python benchmarks/bench_policy_node.py                 # 1 and 2 cameras x 30 s at 30 Hz
    python benchmarks/bench_policy_node.py --seconds 10 --cameras 3
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ros import toto_tiny_encoder  # noqa: E402


def camera_policy(directory: Path, cameras: int, chunk: int) -> Path:
    """An untrained BC policy on the Toto-tiny shape reading ``cameras`` views, saved as train-policy saves one."""
    import torch

    from toto_robot.policies.policy import Policy

    torch.manual_seed(0)
    keys = ["image"] + [f"cam{k}_image" for k in range(1, cameras)]
    pol = Policy(toto_tiny_encoder("spatial_attention"), 19, 4, meta={"task": "franka_pick", "image_size": 64, "action_space": "ee_delta",
                                                                    "binary_gripper": True},
                 cameras=keys, chunk=chunk, temporal_ensemble=0.01 if chunk > 1 else None)
    return pol.save_pretrained(directory / f"policy_{cameras}cam")


def run(policy_dir: Path, cameras: int, args, rclpy_mods) -> dict:
    rclpy, Parameter, SingleThreadedExecutor = rclpy_mods
    from std_msgs.msg import Float32MultiArray

    from toto_robot.ros_nodes.common import StreamStats
    from toto_robot.ros_nodes.policy_node import PolicyNode

    topics = [f"bench/cam{k}" for k in range(cameras)]
    node = PolicyNode(parameter_overrides=[
        Parameter("policy_dir", value=str(policy_dir)), Parameter("image_topic", value=topics[0]), Parameter("output", value="array"),
        Parameter("rate_hz", value=0.0), Parameter("torch_threads", value=args.threads), Parameter("state_topic", value="bench/state"),
        Parameter("action_topic", value="bench/action"), *([Parameter("camera_topics", value=topics[1:])] if cameras > 1 else [])])
    node.stats = StreamStats(window=10**6)  # every command's latency
    peer = rclpy.create_node("bench_state")
    state_pub = peer.create_publisher(Float32MultiArray, "bench/state", 10)
    state = Float32MultiArray(data=np.zeros(19, np.float32).tolist())
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    ex.add_node(peer)
    procs = [subprocess.Popen([sys.executable, "-m", "toto_robot.ros_nodes.synthetic_camera", "--width", "640", "--height", "480",
                               "--hz", str(args.hz), "--seconds", str(args.seconds), "--topic", t], stdout=subprocess.PIPE, text=True)
             for t in topics]
    started, t_state = None, 0.0
    while any(p.poll() is None for p in procs):
        if time.monotonic() - t_state > 0.01:  # proprioception at 100 Hz
            state_pub.publish(state)
            t_state = time.monotonic()
        ex.spin_once(timeout_sec=0.005)
        if started is None and node.stats.received:
            started, cpu0 = time.monotonic(), time.process_time()
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        ex.spin_once(timeout_sec=0.05)
    wall = time.monotonic() - (started or time.monotonic())
    cpu = time.process_time() - cpu0 if started else float("nan")
    import json

    sent = [json.loads(p.stdout.read().strip().splitlines()[-1]) for p in procs]
    lat = np.array(node.stats.latency_ms)
    out = {"cameras": cameras, "front_sent": sent[0]["sent"], "seconds": sent[0]["seconds"], "commands": node.actions,
           "commands_hz": node.actions / sent[0]["seconds"], "unpaired": node.unpaired, "errors": node.stats.errors,
           "latency_median_ms": float(np.median(lat)) if lat.size else float("nan"),
           "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
           "latency_max_ms": float(lat.max()) if lat.size else float("nan"), "cpu_percent": 100 * cpu / max(wall, 1e-9),
           "load": os.getloadavg()[0]}
    ex.remove_node(node)
    ex.remove_node(peer)
    node.destroy_node()
    peer.destroy_node()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--hz", type=float, default=30)
    ap.add_argument("--cameras", type=int, default=2, help="views of the multi-camera policy (the reference reads one)")
    ap.add_argument("--chunk", type=int, default=20, help="actions per chunk, executed with temporal ensembling (1: none)")
    ap.add_argument("--threads", type=int, default=1, help="the node's torch_threads")
    args = ap.parse_args()
    from toto_robot.ros.dds import use_profile

    profile = use_profile()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    root = Path(tempfile.mkdtemp())
    rclpy.init()
    print(f"policy node, 640x480 rgb8 at {args.hz:.0f} Hz per camera for {args.seconds:.0f} s, Toto-tiny shape, chunk {args.chunk} "
          f"with temporal ensembling, torch_threads {args.threads}, Fast DDS profile {profile}, {os.cpu_count()} CPUs")
    print(f"{'cameras':>7} {'sent':>5} {'cmds':>5} {'cmd/s':>6} {'share':>6} {'unpaired':>8} {'lat med':>8} {'p95':>7} {'max':>7} {'cpu%':>5} {'load':>5}")
    rows = []
    for k in (1, args.cameras):
        r = run(camera_policy(root, k, args.chunk), k, args, (rclpy, Parameter, SingleThreadedExecutor))
        rows.append(r)
        print(f"{k:7d} {r['front_sent']:5d} {r['commands']:5d} {r['commands_hz']:6.1f} {r['commands'] / max(1, r['front_sent']):6.1%} "
              f"{r['unpaired']:8d} {r['latency_median_ms']:8.1f} {r['latency_p95_ms']:7.1f} {r['latency_max_ms']:7.1f} {r['cpu_percent']:5.0f} "
              f"{r['load']:5.2f}", flush=True)
    one, many = rows
    print(f"ratios, {args.cameras} cameras / 1 camera: commands/s {many['commands_hz'] / max(one['commands_hz'], 1e-9):.2f}, "
          f"median latency {many['latency_median_ms'] / one['latency_median_ms']:.2f}, cpu {many['cpu_percent'] / one['cpu_percent']:.2f}")
    print("cmds = commands published (once per front frame, when every camera's frame of that moment is there); share = of the front "
          "frames sent; unpaired = acting attempts that found no frame of another camera within camera_sync_tolerance_s; "
          "latency = front frame stamp -> command published")
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
