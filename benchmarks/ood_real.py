"""The OOD monitor on real frames (issue 33, docs/ood.md): a BC policy trained on the first episodes of one real robot set
(``policy.max_episodes``) scored on that set's later episodes, which it never saw (in distribution), and on other robot
sets and natural video clips (shifted). AUROC of the frame score per source, and the share of frames whose moving
average is above WARN / ERROR.

    python benchmarks/ood_real.py --policy runs/ood/g1_bc/policy --own ../shared/data/real/robot/g1_inspire_pick_bottle \\
        --first-held-out 6 --other ../shared/data/real/robot/so101_bimanual_cloth ../shared/data/real/robot/lingzu_teleop_open50 \\
        ../shared/data/real/videos --stride 3 --out runs/ood/real
    # natural clips read sparser than the robot sets (decoding them dominates): every 10th of their first 300 frames
    python benchmarks/ood_real.py --policy runs/ood/g1_bc/policy --own ../shared/data/real/robot/g1_inspire_pick_bottle \
        --first-held-out 6 --other ../shared/data/real/videos --stride 3 --other-stride 10 --other-max-frames 30 --out runs/ood/real_videos
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from toto_robot.data.formats import open_demos
from toto_robot.policies import load_policy
from toto_robot.policies.ood import auroc, load_reference
from toto_robot.policies.ood_report import recordings, score_frames
from toto_robot.utils.io import atomic_save_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", required=True)
    ap.add_argument("--own", required=True, help="the robot set the policy was trained on")
    ap.add_argument("--first-held-out", type=int, required=True, help="its first episode the policy never saw (policy.max_episodes)")
    ap.add_argument("--other", nargs="+", required=True, help="other robot sets or folders of videos")
    ap.add_argument("--stride", type=int, default=3)
    ap.add_argument("--max-frames", type=int, default=200, help="per episode or clip")
    ap.add_argument("--other-stride", type=int, default=None, help="--stride for the --other sources (default: --stride)")
    ap.add_argument("--other-max-frames", type=int, default=None, help="--max-frames for the --other sources (default: --max-frames)")
    ap.add_argument("--out", default="runs/ood/real")
    args = ap.parse_args()
    other_stride = args.stride if args.other_stride is None else args.other_stride
    other_max = args.max_frames if args.other_max_frames is None else args.other_max_frames
    if min(args.stride, other_stride, args.max_frames, other_max) < 1:
        ap.error("strides and frame limits must be >= 1")
    policy, ref = load_policy(args.policy), load_reference(args.policy)
    ds = open_demos(args.own)
    own_s, own_a = [], []
    for i in range(args.first_held_out, len(ds)):
        s, a = score_frames(policy.encoder, ref, np.asarray(ds[i]["image"])[::args.stride][:args.max_frames])
        own_s.append(s)
        own_a.append(a)
    inside, inside_avg = np.concatenate(own_s), np.concatenate(own_a)
    rows = [{"source": f"{Path(args.own).name} held-out episodes", "recordings": len(own_s), "frames": len(inside),
             "mean_score": float(inside.mean()), "warn_share": float(np.mean(inside_avg > ref.thresholds["average_warn"])),
             "error_share": float(np.mean(inside_avg > ref.thresholds["average_error"]))}]
    print(json.dumps(rows[-1]), flush=True)
    per_recording = []
    for other in args.other:
        s, a, n = [], [], 0
        for name, frames in recordings(other, other_stride, other_max):
            x, y = score_frames(policy.encoder, ref, frames)
            s.append(x)
            a.append(y)
            n += 1
            per_recording.append({"source": Path(other).name, "recording": name, "frames": len(x), "mean_score": float(x.mean()),
                                  "warn_share": float(np.mean(y > ref.thresholds["average_warn"]))})
        s, a = np.concatenate(s), np.concatenate(a)
        rows.append({"source": Path(other).name, "recordings": n, "frames": len(s), "mean_score": float(s.mean()),
                     "warn_share": float(np.mean(a > ref.thresholds["average_warn"])),
                     "error_share": float(np.mean(a > ref.thresholds["average_error"])), "auroc_frame": auroc(inside, s)})
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_json({"policy": args.policy, "thresholds": ref.thresholds, "reference": ref.info, "stride": args.stride,
                      "max_frames": args.max_frames, "other_stride": other_stride, "other_max_frames": other_max, "rows": rows,
                      "per_recording": per_recording}, out / "ood_real.json")


if __name__ == "__main__":
    main()
