"""The OOD monitor in simulation (issue 33, docs/ood.md): a BC policy with its reference, rolled out in its own
scene and under shifts (lighting, camera pose, table colours, distractor objects, another task). Per shift kind:
AUROC of the frame score (in-distribution frames vs shifted ones) and of the episode's mean score; over all
episodes: success rate per quartile of the episode's mean moving-average score and per level of that mean (below WARN,
WARN to ERROR, above ERROR), with Wilson 95% intervals, and the AUROC of that mean as a predictor of failure (over all
episodes, within each shift, and from the mean score of each episode's first ``--early-frames`` frames only, before a
failing policy has had time to wander off).
``other_task`` scores another task's success, which a policy never learnt: leave it out (``--shifts``) when the
question is whether the score predicts failure.

    python benchmarks/ood_sim.py --policy runs/ood/cabinet_bc/policy --episodes 10 --out runs/ood/sim
    python benchmarks/ood_sim.py --policy runs/ood/reach_bc/policy --episodes 30 \
        --shifts none,lighting,camera,camera_10cm,colours,distractors --out runs/ood/sim_reach
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from toto_robot.policies import load_policy
from toto_robot.policies.evaluate import EVAL_SEED_OFFSET
from toto_robot.policies.ood import OODMonitor, auroc, load_reference
from toto_robot.sim_envs import make_env
from toto_robot.utils.io import atomic_save_json
from toto_robot.utils.stats import wilson_interval

SHIFTS = {  # name -> (task or None for the policy's own, randomization)
    "none": (None, {}),
    "lighting": (None, {"lighting": True}),
    "camera": (None, {"camera_jitter": 0.05}),
    "camera_10cm": (None, {"camera_jitter": 0.10}),
    "colours": (None, {"colors": True}),
    "distractors": (None, {"distractors": 3}),
    "other_task": ("franka_pick", {}),
}


def rollouts(policy, ref, task: str, randomization: dict, episodes: int, seed: int) -> list[dict]:
    env = make_env(task, image_size=int(policy.meta.get("image_size", 64)), camera=policy.meta.get("camera", "agentview"),
                   randomization=randomization, **({"max_steps": policy.meta["max_steps"]} if policy.meta.get("max_steps") else {}))
    out = []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=EVAL_SEED_OFFSET + seed * 1000 + ep)
            policy.reset()
            monitor, scores, averages, success, done = OODMonitor(ref), [], [], False, False
            while not done:
                action, feats = policy.act_with_features(obs)
                s, a, _ = monitor.update(feats)
                scores.append(s)
                averages.append(a)
                obs, _, terminated, truncated, info = env.step(action)
                success = success or bool(info.get("success"))
                done = terminated or truncated
            out.append({"scores": scores, "averages": averages, "success": success})
    finally:
        env.close()
    return out


def success_bins(mean: np.ndarray, ok: np.ndarray, edges) -> list[dict]:
    """Episodes binned by their mean score on ``edges`` (the last bin closed) -> successes per bin, Wilson 95%."""
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (mean >= lo) & (mean <= hi) if hi == edges[-1] else (mean >= lo) & (mean < hi)
        k, n = int(ok[sel].sum()), int(sel.sum())
        ci = wilson_interval(k, n)
        bins.append({"score_from": float(lo), "score_to": float(hi), "episodes": n, "successes": k, "success_rate": k / max(1, n),
                     "ci_low": ci[0], "ci_high": ci[1]})
        print(json.dumps(bins[-1]), flush=True)
    return bins


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", required=True)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shifts", default=",".join(SHIFTS))
    ap.add_argument("--early-frames", type=int, default=5, help="frames behind the early failure AUROC")
    ap.add_argument("--out", default="runs/ood/sim")
    args = ap.parse_args()
    policy, ref = load_policy(args.policy), load_reference(args.policy)
    own = policy.meta["task"]
    runs = {}
    for name in args.shifts.split(","):
        task, rnd = SHIFTS[name]
        runs[name] = rollouts(policy, ref, task or own, rnd, args.episodes, args.seed)
        sr = np.mean([r["success"] for r in runs[name]])
        print(f"{name:12s} success {sr:.2f} mean score {np.mean([np.mean(r['scores']) for r in runs[name]]):.3g}", flush=True)
    inside = runs["none"]
    rows = []
    for name, eps in runs.items():
        row = {"shift": name, "episodes": len(eps), "successes": int(sum(r["success"] for r in eps)),
               "mean_score": float(np.mean([np.mean(r["scores"]) for r in eps])),
               "share_above_warn": float(np.mean(np.concatenate([r["averages"] for r in eps]) > ref.thresholds["average_warn"]))}
        won = np.array([r["success"] for r in eps])
        if won.any() and (~won).any():  # within this condition: do its failures score higher than its successes?
            row["failure_auroc"] = auroc([np.mean(r["averages"]) for r in eps if r["success"]], [np.mean(r["averages"]) for r in eps if not r["success"]])
        if name != "none":
            row["auroc_frame"] = auroc(np.concatenate([r["scores"] for r in inside]), np.concatenate([r["scores"] for r in eps]))
            row["auroc_episode"] = auroc([np.mean(r["averages"]) for r in inside], [np.mean(r["averages"]) for r in eps])
        rows.append(row)
        print(json.dumps(row), flush=True)
    every = [r for eps in runs.values() for r in eps]
    mean = np.array([np.mean(r["averages"]) for r in every])
    ok = np.array([r["success"] for r in every])
    bins = success_bins(mean, ok, np.quantile(mean, [0, 0.25, 0.5, 0.75, 1.0]))
    levels = success_bins(mean, ok, [min(0.0, mean.min()), ref.thresholds["average_warn"], ref.thresholds["average_error"], max(np.inf, mean.max())])
    # does a higher episode score go with failure? (0.5: no relation; needs both outcomes)
    early = np.array([np.mean(r["scores"][:args.early_frames]) for r in every])
    both = ok.any() and (~ok).any()
    failure_auroc = auroc(mean[ok], mean[~ok]) if both else None
    failure_auroc_early = auroc(early[ok], early[~ok]) if both else None
    print(json.dumps({"failure_auroc": failure_auroc, f"failure_auroc_first{args.early_frames}": failure_auroc_early, "episodes": len(ok),
                      "successes": int(ok.sum())}), flush=True)
    per_episode = [{"shift": name, "mean_average": float(np.mean(r["averages"])), "success": bool(r["success"]), "steps": len(r["scores"])}
                   for name, eps in runs.items() for r in eps]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_json({"policy": args.policy, "episodes": args.episodes, "seed": args.seed, "thresholds": ref.thresholds, "shifts": rows,
                      "success_by_score": bins, "success_by_level": levels, "failure_auroc": failure_auroc,
                      "failure_auroc_early": failure_auroc_early, "early_frames": args.early_frames, "per_episode": per_episode}, out / "ood_sim.json")


if __name__ == "__main__":
    main()
