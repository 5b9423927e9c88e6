"""Where a pick policy fails: each evaluation episode (the seeds evaluate_policy uses) sorted into success, gripper
never closed, closed away from the cube in x-y (more than the expert's 1.2 cm), closed too high, lifted and lost, or
closed on target without a grasp; with where the gripper was, relative to the cube, when it first closed.
    MUJOCO_GL=egl python benchmarks/pick_failures.py runs/four/grid_e60/runs/franka_pick/toto/seed0/policy [--episodes 30] [--seed 0]
"""
from __future__ import annotations

import argparse
import collections

import numpy as np

from toto_robot.policies import load_policy
from toto_robot.policies.evaluate import EVAL_SEED_OFFSET
from toto_robot.sim_envs import make_env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("policy_dir")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0, help="evaluate_policy's seed: episodes EVAL_SEED_OFFSET + 1000 seed + i")
    args = ap.parse_args()
    policy = load_policy(args.policy_dir)
    meta = policy.meta
    extra = [k[: -len("_image")] for k in policy.cameras if k != "image"]
    env = make_env(meta["task"], image_size=meta.get("image_size", 64), camera=meta.get("camera", "agentview"), extra_cameras=extra,
                   **({"max_steps": meta["max_steps"]} if meta.get("max_steps") else {}))
    u = env.unwrapped
    kinds, offsets = collections.Counter(), []
    for ep in range(args.episodes):
        obs, _ = env.reset(seed=EVAL_SEED_OFFSET + args.seed * 1000 + ep)
        policy.reset()
        closed_at, was_open, height, success = None, True, 0.0, False
        while True:
            action = policy.act(obs)
            if action[-1] > 0 and was_open and closed_at is None:  # the first close: the gripper's place relative to the cube
                grip, cube = u.grip_pos(), u.task.cube_pos(u)
                closed_at = (float(np.linalg.norm((grip - cube)[:2])), float(grip[2] - cube[2]))
            was_open = action[-1] <= 0
            obs, _, terminated, truncated, info = env.step(action)
            height, success = max(height, u.task.cube_height(u)), success or bool(info.get("success"))
            if terminated or truncated:
                break
        if success:
            kind = "success"
        elif closed_at is None:
            kind = "never closed"
        elif height > 0.01:
            kind = "lifted, then lost or not high enough"
        elif closed_at[0] > 0.012:
            kind = "closed away from the cube in x-y"
        elif closed_at[1] > 0.02:
            kind = "closed too high"
        else:
            kind = "closed on target, no grasp"
        kinds[kind] += 1
        if closed_at is not None and not success:
            offsets.append(closed_at[0])
    for kind, n in kinds.most_common():
        print(f"{kind:40s} {n:3d} / {args.episodes}")
    if offsets:
        print(f"failed episodes: the gripper first closed {100 * np.median(offsets):.1f} cm from the cube in x-y (median; "
              f"{100 * min(offsets):.1f} to {100 * max(offsets):.1f} cm)")


if __name__ == "__main__":
    main()
