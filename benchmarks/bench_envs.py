"""Simulation speed per task: env steps/s with and without the camera, against raw MuJoCo on the same
compiled model (``mj_step`` x substeps + ``Renderer.render``) as the reference (same process), and
against the same env drawing its full meshes (``mesh_cell=None``), with how much the frames differ.
    MUJOCO_GL=egl OMP_NUM_THREADS=1 python benchmarks/bench_envs.py [--image-size 64]
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


def raw_steps_per_second(env, n: int) -> float:
    """The floor: physics substeps and one render per control step, no Python env logic."""
    import mujoco

    base = env.unwrapped
    renderer = mujoco.Renderer(base.model, env.unwrapped.image_size, env.unwrapped.image_size)
    t0 = time.perf_counter()
    for _ in range(n):
        for _ in range(base.n_substeps):
            mujoco.mj_step(base.model, base.data)
        renderer.update_scene(base.data, camera=base.camera, scene_option=base._scene_option)
        renderer.render()
    renderer.close()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    print(f"{'task':16s} {'env steps/s':>12s} {'no camera':>10s} {'raw mujoco':>11s} {'env / raw':>10s} "
          f"{'full meshes':>12s} {'speed-up':>9s} {'frame diff /255':>16s}")
    for task in TASK_IDS:
        env, env_full = make_env(task, image_size=args.image_size), make_env(task, image_size=args.image_size, mesh_cell=None)
        full, phys = steps_per_second(env, args.steps, True), steps_per_second(env, args.steps, False)
        raw = raw_steps_per_second(env, args.steps)
        full_meshes = steps_per_second(env_full, args.steps, True)
        diff = np.mean([np.abs(env.reset(seed=s)[0]["image"].astype(int) - env_full.reset(seed=s)[0]["image"]).mean() for s in range(5)])
        print(f"{task:16s} {full:12.1f} {phys:10.1f} {raw:11.1f} {full / raw:9.2f}x {full_meshes:12.1f} {full / full_meshes:8.2f}x {diff:16.3f}")
        env.close()
        env_full.close()


if __name__ == "__main__":
    main()
