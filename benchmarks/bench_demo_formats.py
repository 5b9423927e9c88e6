"""Demonstration formats: how far LeRobot MP4 frames are from the originals, and whether simulated demos
recorded through ROS into a rosbag2 clone as well as the same demos collected directly.

    python benchmarks/bench_demo_formats.py codec                      # pixel error of the H.264 export per size and crf
    python benchmarks/bench_demo_formats.py clone --episodes 30 --eval 30   # ROS -> bag -> import -> BC -> success, vs direct

``codec`` collects scripted-expert episodes of franka_pick (the collector's default visual randomization)
at 32 and 64 px, exports them as LeRobot v3 with H.264 (yuv420p) at several crf values and reads them
back: absolute error per pixel channel (0..255: mean, 99th percentile, max), PSNR, and the video size
beside the lossless PNG-in-parquet export.

``clone`` records ``--episodes`` franka_cabinet episodes through the simulator bridge and the bag
recorder (ROS topics, Fast DDS, MCAP), imports the bag, collects the same seeds directly, counts the
episodes that are identical bit for bit, trains the same behaviour cloning on each (random-init
encoder, average pooling, 25 epochs) and evaluates both on the same ``--eval`` seeds with Wilson 95% intervals.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def codec(args) -> None:
    from toto_robot.data.demos import DemoDataset
    from toto_robot.data.formats.lerobot import LeRobotDataset, export_lerobot
    from toto_robot.sim_envs.collect import CollectConfig, collect

    work = Path(tempfile.mkdtemp(prefix="bench_formats_"))
    print(f"{'size':>5} {'crf':>4} {'mean':>6} {'p99':>5} {'max':>5} {'PSNR dB':>8} {'video KB/1k frames':>19} {'PNG KB/1k frames':>17}")
    try:
        for size in (32, 64):
            demos = collect(CollectConfig(task="franka_pick", episodes=args.episodes, out_dir=str(work / f"demos{size}"), image_size=size,
                                          videos=False, preview_episodes=0))
            src = DemoDataset(demos)
            frames = np.concatenate([ep["image"] for ep in src]).astype(np.int16)
            png = export_lerobot(demos, work / f"png{size}", use_videos=False)
            png_kb = (png / "data" / "chunk-000" / "file-000.parquet").stat().st_size / 1024 / len(frames) * 1000
            for crf in (23, 18, 10):
                out = export_lerobot(demos, work / f"lr{size}_{crf}", crf=crf)
                back = LeRobotDataset(out)
                got = np.concatenate([back[i]["image"] for i in range(len(back))]).astype(np.int16)
                err = np.abs(frames - got)
                mse = float(np.mean(err.astype(np.float64) ** 2))
                kb = sum(p.stat().st_size for p in (out / "videos").rglob("*.mp4")) / 1024 / len(frames) * 1000
                print(f"{size:5d} {crf:4d} {err.mean():6.2f} {np.percentile(err, 99):5.0f} {err.max():5d} {10 * np.log10(255 ** 2 / mse):8.1f} "
                      f"{kb:19.0f} {png_kb:17.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def clone(args) -> None:
    from toto_robot.data.demos import DemoDataset
    from toto_robot.data.formats.rosbag2 import RosbagImportConfig, import_rosbag2
    from toto_robot.policies import load_policy
    from toto_robot.policies.bc import BCConfig, train_bc
    from toto_robot.policies.evaluate import evaluate_policy
    from toto_robot.ros_nodes.bag_recorder_node import record_sim_episodes
    from toto_robot.sim_envs.collect import CollectConfig, collect

    work = Path(args.out)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    bag = record_sim_episodes(work / "bag", args.task, args.episodes, image_size=64, timeout_s=3000)
    t_rec = time.perf_counter() - t0
    import_rosbag2(RosbagImportConfig(src=str(bag), out_dir=str(work / "from_bag"), state_topic="/robot/state", action_topic="/toto/action",
                                      episode_topic="/sim/episode_done", task=args.task, action_space="ee_delta",
                                      tolerance_s=1.0))  # on a loaded CPU the bridge was seen to stall 137 ms between a state and its frame
    # the simulator bridge runs the task without visual randomization: collect the same way, same seeds
    collect(CollectConfig(task=args.task, episodes=args.episodes, out_dir=str(work / "direct"), image_size=64, randomization={}, videos=False,
                          preview_episodes=0))
    a, b = DemoDataset(work / "direct"), DemoDataset(work / "from_bag")
    same = sum(all(np.array_equal(a[i][k], b[i][k]) for k in ("image", "state", "action", "success")) for i in range(len(a)))
    results = {"task": args.task, "episodes": args.episodes, "identical_episodes": same, "bag_mb": sum(p.stat().st_size for p in bag.rglob("*")) / 2**20,
               "record_s": t_rec}
    for name in ("direct", "from_bag"):
        policy_dir = train_bc(BCConfig(demos=str(work / name), out_dir=str(work / f"bc_{name}"), encoder={"name": "random", "pooling": "average"},
                                       epochs=25, lr=3e-3, seed=0))
        results[name] = evaluate_policy(load_policy(policy_dir), args.task, episodes=args.eval, progress=False)
    print(json.dumps(results, indent=2))
    for name in ("direct", "from_bag"):
        r = results[name]
        print(f"{name:9s} success {r['successes']}/{r['episodes']} = {r['success_rate']:.2f}  Wilson 95% [{r['ci_low']:.2f}, {r['ci_high']:.2f}]")
    print(f"episodes identical bit for bit: {same}/{args.episodes}; recording through ROS took {t_rec:.0f} s")
    (work / "results.json").write_text(json.dumps(results, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("codec")
    c.add_argument("--episodes", type=int, default=4)
    k = sub.add_parser("clone")
    k.add_argument("--task", default="franka_cabinet")
    k.add_argument("--episodes", type=int, default=30)
    k.add_argument("--eval", type=int, default=30)
    k.add_argument("--out", default="runs/bench/demo_formats_clone")
    args = ap.parse_args()
    codec(args) if args.what == "codec" else clone(args)


if __name__ == "__main__":
    sys.exit(main())
