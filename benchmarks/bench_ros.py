"""End-to-end camera -> features over real ROS 2 (rclpy + Fast DDS, one process, two nodes):
latency from publish to receiving the features, sustained rate, frames skipped as stale, and
resident memory before/after the stream (a leak shows as growth). The reference is the encoder
called directly on the same frames in the same process.

    python benchmarks/bench_ros.py [--seconds 60] [--hz 30] [--encoder-dir <saved encoder>]
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray

sys.path.insert(0, str(Path(__file__).parent))
from common import timeit  # noqa: E402

from toto_robot.encoders import build_encoder, load_encoder  # noqa: E402
from toto_robot.ros.convert import array_to_image_msg  # noqa: E402
from toto_robot.ros_nodes.encoder_node import EncoderNode  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--hz", type=float, default=30)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--encoder-dir", default="")
    ap.add_argument("--threads", type=int, default=1, help="the node's torch_threads parameter (0 = torch default)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    enc_dir = args.encoder_dir or str(Path(tmp) / "enc")
    if not args.encoder_dir:
        build_encoder("random", pooling="average").save_pretrained(enc_dir)
    enc = load_encoder(enc_dir)
    frame = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    with torch.no_grad():
        direct = timeit(lambda: enc(frame[None]), repeat=20, warmup=3)

    rclpy.init()
    node = EncoderNode(parameter_overrides=[Parameter("encoder_dir", value=enc_dir), Parameter("report_every_s", value=1e6),
                                        Parameter("torch_threads", value=args.threads)])
    peer = rclpy.create_node("bench_camera")
    sent: dict[int, float] = {}
    latencies = []

    def on_header(h):
        key = h.stamp.sec * 1_000_000_000 + h.stamp.nanosec
        if key in sent:
            latencies.append(time.perf_counter() - sent.pop(key))

    from std_msgs.msg import Header

    peer.create_subscription(Header, "toto/features/header", on_header, 50)
    peer.create_subscription(Float32MultiArray, "toto/features", lambda m: None, 50)
    pub = peer.create_publisher(Image, "camera/image_raw", 10)
    count = [0]

    def publish():
        msg = array_to_image_msg(frame)
        now = peer.get_clock().now()
        msg.header.stamp = now.to_msg()
        sent[now.nanoseconds] = time.perf_counter()
        pub.publish(msg)
        count[0] += 1

    peer.create_timer(1.0 / args.hz, publish)
    ex = MultiThreadedExecutor(num_threads=2)
    ex.add_node(node)
    ex.add_node(peer)
    end = time.monotonic() + 3
    while time.monotonic() < end:  # warm-up
        ex.spin_once(timeout_sec=0.05)
    latencies.clear()
    processed0, count[0] = node.frames, 0
    mem0, t0 = rss_mb(), time.monotonic()
    while time.monotonic() < t0 + args.seconds:
        ex.spin_once(timeout_sec=0.05)
    elapsed = time.monotonic() - t0
    mem1 = rss_mb()
    processed = node.frames - processed0
    lat = np.array(latencies) * 1000
    print(f"encoder {enc.name} ({enc.feature_dim}-d), {args.size}x{args.size} rgb8 at {args.hz:.0f} Hz for {elapsed:.0f} s")
    print(f"  direct call (reference)  {1000 * direct:7.2f} ms/frame")
    if len(lat):
        print(f"  ROS end-to-end latency   median {np.median(lat):7.2f} ms   p95 {np.percentile(lat, 95):7.2f} ms   "
              f"({np.median(lat) / (1000 * direct):.2f}x direct)")
    print(f"  sustained rate           {processed / elapsed:7.1f} features/s of {count[0] / elapsed:.1f} frames/s sent; "
          f"{node.worker.replaced} skipped as stale")
    print(f"  resident memory          {mem0:7.1f} MB -> {mem1:.1f} MB ({mem1 - mem0:+.1f} MB)")
    node.close()
    node.destroy_node()
    peer.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
