"""Camera -> features over real ROS 2 (rclpy + Fast DDS) with the camera in another process, as on a
robot: a stand-in driver (``toto_robot.ros_nodes.synthetic_camera``) publishes 640x480 and 1280x720
frames, rgb8 and JPEG (sensor_msgs/CompressedImage), best effort, at ``--hz``; the encoder node runs
in this process. For each stream it prints the features rate against the frames sent, frames lost
(sent but never delivered to the node), frames skipped as stale (delivered while the worker was busy),
latency from the frame's stamp to its features being published (median / p95 / max), this process's
CPU (100% = one core) and its resident memory growth, and the load average, since other work on the
machine changes every one of these.

    python benchmarks/bench_ros.py                          # Toto-tiny shape, 4 streams x 60 s at 30 Hz
    python benchmarks/bench_ros.py --quick                  # 640x480 rgb8 + JPEG, 10 s each
    python benchmarks/bench_ros.py --encoder-dir runs/.../policy/encoder --seconds 60
    python benchmarks/bench_ros.py --quick --no-profile --depth 1   # Fast DDS defaults, depth-1 queue: the old losses
    python benchmarks/bench_ros.py --encoder recipe --streams 640x480:rgb8 --seconds 30 --threads 2 --precision bfloat16
                                  # the real-camera read-out (256 px, four scans, layer 1; benchmarks/bench_readout.py)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

STREAMS = {"640x480:rgb8": (640, 480, False), "1280x720:rgb8": (1280, 720, False),
           "640x480:jpeg": (640, 480, True), "1280x720:jpeg": (1280, 720, True)}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def toto_tiny_encoder(pooling: str = "average"):
    """This project's Toto-tiny shape (the demo's: 4 layers x 128, 8x8 patch tokens of 64 px frames), untrained:
    the same cost as a pre-trained one, no checkpoint needed."""
    from toto_robot.encoders.toto import TotoEncoder
    from toto_robot.model.toto import TotoConfig

    model = TotoConfig.from_name("toto_tiny").to_dict() | {"input_dim": 8 * 8 * 3, "block_size": 8 * 64 + 1}
    spec = {"model": model, "tokenizer": {"tokenizer": "patch", "patch_size": 8}, "resolution": 64, "start": "video"}
    return TotoEncoder.from_spec("toto_tiny", spec, pooling)


def run_stream(name: str, args, enc_dir: str, rclpy_mods) -> dict:
    rclpy, Parameter, SingleThreadedExecutor = rclpy_mods
    from toto_robot.ros_nodes.common import StreamStats
    from toto_robot.ros_nodes.encoder_node import EncoderNode

    w, h, jpeg = STREAMS[name]
    node = EncoderNode(parameter_overrides=[Parameter("encoder_dir", value=enc_dir), Parameter("report_every_s", value=1e6),
                                            Parameter("torch_threads", value=args.threads), Parameter("compressed", value=jpeg),
                                            Parameter("precision", value=args.precision),
                                            Parameter("qos_depth", value=args.depth), Parameter("prescale", value=not args.no_prescale),
                                            Parameter("image_topic", value=f"bench/camera_{w}x{h}_{'jpeg' if jpeg else 'rgb8'}")])
    node.stats = node.worker.stats = StreamStats(window=10**6)  # every frame's latency, not a rolling window
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    cmd = [sys.executable, "-m", "toto_robot.ros_nodes.synthetic_camera", "--width", str(w), "--height", str(h), "--hz", str(args.hz),
           "--seconds", str(args.seconds), "--topic", node.p["image_topic"]] + (["--jpeg"] if jpeg else []) + \
          (["--no-profile"] if args.no_profile else [])
    pub = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    load0, cpu0, mem0, t0 = os.getloadavg(), time.process_time(), rss_mb(), time.monotonic()
    started = None
    while pub.poll() is None:
        ex.spin_once(timeout_sec=0.05)
        if started is None and node.stats.received:
            started, cpu0, mem0 = time.monotonic(), time.process_time(), rss_mb()  # from the first frame on
    end = time.monotonic() + 2.0
    while time.monotonic() < end:  # the last frames in flight
        ex.spin_once(timeout_sec=0.05)
    wall = time.monotonic() - (started or t0)
    cpu, mem1, load1 = time.process_time() - cpu0, rss_mb(), os.getloadavg()
    out = pub.stdout.read().strip().splitlines()
    report = json.loads(out[-1]) if out else {"error": "publisher printed nothing"}
    s = node.stats.snapshot()
    lat = np.array(node.stats.latency_ms)
    node.close()
    ex.remove_node(node)
    node.destroy_node()
    if "error" in report:
        raise RuntimeError(f"{name}: publisher failed: {report['error']}")
    sent = report["sent"]
    return {"stream": name, "sent": sent, "sent_hz": report["hz"], "publisher_skipped": report["skipped"], "frame_bytes": report["bytes"],
            "received": s["frames_received"], "lost": sent - s["frames_received"], "lost_seq_gaps": s["frames_lost"],
            "stale": s["frames_stale"], "processed": s["frames_processed"], "features_hz": s["frames_processed"] / report["seconds"],
            "errors": s["errors"], "unreadable": s["frames_unreadable"],
            "latency_median_ms": float(np.median(lat)) if lat.size else float("nan"),
            "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
            "latency_max_ms": float(lat.max()) if lat.size else float("nan"),
            "processing_median_ms": s["processing_median_ms"], "cpu_percent": 100 * cpu / wall,
            "rss_start_mb": mem0, "rss_growth_mb": mem1 - mem0, "load_before": load0, "load_after": load1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--hz", type=float, default=30)
    ap.add_argument("--streams", default=",".join(STREAMS), help=f"comma-separated, from {', '.join(STREAMS)}")
    ap.add_argument("--quick", action="store_true", help="10 s each, 640x480 rgb8 and JPEG")
    ap.add_argument("--encoder", default="toto_tiny", choices=["toto_tiny", "recipe", "random"],
                    help="without --encoder-dir; recipe = the real-camera read-out, untrained")
    ap.add_argument("--precision", default="", choices=["", "float32", "bfloat16"], help="the node's precision parameter")
    ap.add_argument("--encoder-dir", default="")
    ap.add_argument("--threads", type=int, default=1, help="the node's torch_threads parameter (0 = torch default)")
    ap.add_argument("--depth", type=int, default=10, help="the node's qos_depth")
    ap.add_argument("--no-profile", action="store_true", help="Fast DDS defaults in both processes (no project profile)")
    ap.add_argument("--no-prescale", action="store_true", help="decode frames at full size (the encoder resizes them itself)")
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.streams = min(args.seconds, 10.0), "640x480:rgb8,640x480:jpeg"
    streams = args.streams.split(",")
    bad = [s for s in streams if s not in STREAMS]
    if bad:
        ap.error(f"unknown streams {bad}; known: {', '.join(STREAMS)}")

    import tempfile

    import torch

    from toto_robot.encoders import build_encoder, load_encoder
    from toto_robot.ros.dds import use_profile

    profile = None if args.no_profile else use_profile()  # before rclpy.init: Fast DDS reads it once per process
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    enc_dir = args.encoder_dir
    if not enc_dir:
        enc_dir = str(Path(tempfile.mkdtemp()) / "enc")
        if args.encoder == "recipe":
            sys.path.insert(0, str(Path(__file__).parent))
            from bench_readout import recipe_encoder

            built = recipe_encoder()
        else:
            built = toto_tiny_encoder() if args.encoder == "toto_tiny" else build_encoder("random", pooling="average")
        built.save_pretrained(enc_dir)
    enc = load_encoder(enc_dir)
    if args.precision:
        enc.set_precision(args.precision)
    frame = np.zeros((64, 64, 3), np.uint8)
    with torch.no_grad():
        enc(frame[None])
        t = time.perf_counter()
        for _ in range(20):
            enc(frame[None])
        direct_ms = (time.perf_counter() - t) / 20 * 1000
    rclpy.init()
    print(f"encoder {enc.name} ({sum(p.numel() for p in enc.parameters()) / 1e6:.2f}M params, input {enc.input_size} px, "
          f"{enc.feature_dim}-d, {enc.precision}): {direct_ms:.1f} ms per 64 px frame called directly; torch_threads {args.threads}")
    print(f"Fast DDS profile: {profile or 'Fast DDS defaults'}; node queue depth {args.depth}; prescale {not args.no_prescale}; "
          f"{os.cpu_count()} CPUs; {args.hz:.0f} Hz for {args.seconds:.0f} s per stream")
    print(f"{'stream':14} {'sent':>5} {'lost':>5} {'(node)':>6} {'stale':>5} {'feat/s':>7} {'lat med':>8} {'p95':>7} {'max':>7} "
          f"{'cpu%':>5} {'rss+MB':>7} {'load':>10}")
    results = []
    for name in streams:
        r = run_stream(name, args, enc_dir, (rclpy, Parameter, SingleThreadedExecutor))
        results.append(r)
        print(f"{name:14} {r['sent']:5d} {r['lost']:5d} {r['lost_seq_gaps']:6d} {r['stale']:5d} {r['features_hz']:7.1f} {r['latency_median_ms']:8.1f} "
              f"{r['latency_p95_ms']:7.1f} {r['latency_max_ms']:7.1f} {r['cpu_percent']:5.0f} {r['rss_growth_mb']:+7.1f} "
              f"{r['load_before'][0]:4.2f}/{r['load_after'][0]:4.2f}", flush=True)
    print("sent = frames the camera process published (it drops its own frames when it falls behind, as a camera does: "
          f"{sum(r['publisher_skipped'] for r in results)} here); lost = sent - delivered to the node, (node) = the node's own count from gaps in sequence numbers; stale = delivered while the worker was busy (skipped, newest "
          "frame wins); latency = frame stamp -> features published; cpu% of this process (node + executor), 100 = one core; "
          "load = 1-min load average before/after")
    rclpy.try_shutdown()
    if args.json:
        from toto_robot.utils.io import atomic_save_json

        atomic_save_json({"encoder": enc.name, "direct_ms": direct_ms, "profile": profile, "args": vars(args), "results": results}, args.json)


if __name__ == "__main__":
    main()
