"""Simulation speed: env steps/s with camera rendering vs physics only (same process), per task.
    MUJOCO_GL=egl python benchmarks/bench_envs.py [--image-size 64]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from toto_robot.sim_envs import TASK_IDS, make_env


def steps_per_second(env, n: int, render: bool) -> float:
    env.reset(seed=0)
    base = env.unwrapped
    rng = np.random.default_rng(0)
    step_fn = env.step if render else None
    t0 = time.perf_counter()
    for _ in range(n):
        a = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        if render:
            _, _, term, trunc, _ = step_fn(a)
        else:  # physics and control only: the env's step without the camera
            base._render_camera, saved = (lambda cam: None), base._render_camera
            try:
                _, _, term, trunc, _ = env.step(a)
            finally:
                base._render_camera = saved
        if term or trunc:
            env.reset()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    print(f"{'task':16s} {'render steps/s':>15s} {'physics steps/s':>16s} {'render share':>13s}")
    for task in TASK_IDS:
        env = make_env(task, image_size=args.image_size)
        full, phys = steps_per_second(env, args.steps, True), steps_per_second(env, args.steps, False)
        print(f"{task:16s} {full:15.1f} {phys:16.1f} {1 - full / phys:12.0%}")
        env.close()


if __name__ == "__main__":
    main()
