"""A stand-in camera driver: publishes synthetic frames at a fixed rate from its own process, with the
QoS a camera driver uses, then prints what it sent as one JSON line. For checking a pipeline's
transport and throughput without a camera.

    python -m toto_robot.ros_nodes.synthetic_camera --width 640 --height 480 --hz 30 --seconds 60 [--jpeg]

Frames (sensor_msgs/Image rgb8, or sensor_msgs/CompressedImage JPEG with ``--jpeg``) are stamped with
the publish time, so a subscriber on the same machine can measure latency from the header. They
are smooth shapes with texture (JPEG sizes like a real scene's, not like noise), 30 distinct ones
made before the clock starts. It waits for ``--wait-subscribers`` matched subscribers, then ``--settle-s``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def synthetic_frames(width: int, height: int, n: int = 30, seed: int = 0) -> list[np.ndarray]:
    """``n`` uint8 [H, W, 3] scenes: a lit gradient, a few moving discs and boxes, mild sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([90 + 60 * xx / width, 80 + 50 * yy / height, 110 + 30 * (xx + yy) / (width + height)], -1)
    shapes = [(rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.04, 0.12), rng.integers(0, 256, 3)) for _ in range(6)]
    frames = []
    for i in range(n):
        img = base.copy()
        for k, (cx, cy, r, color) in enumerate(shapes):
            x = (cx + 0.1 * np.sin(2 * np.pi * i / n + k)) * width
            y = (cy + 0.1 * np.cos(2 * np.pi * i / n + k)) * height
            rr = r * min(width, height)
            mask = ((xx - x) ** 2 + (yy - y) ** 2 < rr ** 2) if k % 2 else ((abs(xx - x) < rr) & (abs(yy - y) < 0.6 * rr))
            img[mask] = color
        img += rng.normal(0, 3, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--hz", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--jpeg", action="store_true", help="sensor_msgs/CompressedImage (JPEG, quality --quality) instead of rgb8")
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--topic", default="camera/image_raw")
    ap.add_argument("--reliable", action="store_true", help="reliable QoS (default: best effort, the sensor-data profile)")
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--wait-subscribers", type=int, default=1)
    ap.add_argument("--wait-s", type=float, default=30.0, help="give up after this long without subscribers")
    ap.add_argument("--settle-s", type=float, default=1.5, help="pause between seeing the subscribers and the first frame")
    ap.add_argument("--no-profile", action="store_true", help="keep Fast DDS's defaults instead of the project's profile")
    args = ap.parse_args(argv)

    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from toto_robot.ros.convert import array_to_compressed_msg, array_to_image_msg
    from toto_robot.ros.dds import use_profile

    profile = None if args.no_profile else use_profile()
    rclpy.init()
    node = rclpy.create_node("toto_synthetic_camera")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=args.depth,
                     reliability=ReliabilityPolicy.RELIABLE if args.reliable else ReliabilityPolicy.BEST_EFFORT)
    pub = node.create_publisher(CompressedImage if args.jpeg else Image, args.topic, qos)
    frames = synthetic_frames(args.width, args.height)
    msgs = [array_to_compressed_msg(f, "jpeg", args.quality) if args.jpeg else array_to_image_msg(f) for f in frames]
    end = time.monotonic() + args.wait_s
    while pub.get_subscription_count() < args.wait_subscribers and time.monotonic() < end:
        time.sleep(0.05)
    if pub.get_subscription_count() < args.wait_subscribers:
        print(json.dumps({"error": f"no subscriber on {args.topic} within {args.wait_s} s"}), flush=True)
        return 1
    time.sleep(args.settle_s)  # the subscriber matches this writer a little after this writer matched it (best effort drops until then)
    sent, slot, skipped, t0 = 0, 0, 0, time.monotonic()
    while True:
        due = t0 + slot / args.hz
        if due - t0 >= args.seconds:
            break
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        elif now - due > 1.0 / args.hz:  # this process fell behind (a busy machine): drop the missed frames, as a camera does
            ahead = int(np.ceil((now - t0) * args.hz))
            skipped, slot = skipped + ahead - slot, ahead
            continue
        msg = msgs[sent % len(msgs)]
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        sent, slot = sent + 1, slot + 1
    elapsed = time.monotonic() - t0
    print(json.dumps({"sent": sent, "seconds": elapsed, "hz": sent / elapsed, "skipped": skipped, "bytes": len(msgs[0].data),
                      "width": args.width, "height": args.height, "jpeg": args.jpeg, "profile": profile}), flush=True)
    time.sleep(1.0)  # let the last frames drain before the participant goes away
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
