"""MetaWorld (CortexBench tasks) speed: expert-driven env steps/s with the camera (render + step, the
benchmark's cost per frame), physics only, and the camera alone three ways in one process: the env's
fast path (simplified render meshes, shadows/reflections/skybox/multisampling off), the same settings on
metaworld's full meshes, and MuJoCo's default visual settings on the full meshes (the reference).
    MUJOCO_GL=egl OMP_NUM_THREADS=1 python benchmarks/bench_metaworld.py [--image-size 256] [--steps 100] [--mesh-cell 0.01]
"""
from __future__ import annotations

import argparse
import time

import mujoco
import numpy as np

from toto_robot.sim_envs import METAWORLD_TASK_IDS, make_env
from toto_robot.sim_envs.metaworld_env import MESH_CELL


def run(env, n: int, render: bool) -> float:
    """Expert-driven steps/s; ``render=False`` skips the camera (metaworld physics + the expert only)."""
    base = env.unwrapped
    expert = base.make_expert()
    saved = base._obs
    if not render:
        base._obs = lambda: {"image": None, "state": base.mw_obs[:4].astype(np.float32)}
    try:
        env.reset(seed=0)
        t0 = time.perf_counter()
        for _ in range(n):
            _, _, term, trunc, _ = env.step(expert.act())
            if term or trunc:
                env.reset()
        return n / (time.perf_counter() - t0)
    finally:
        base._obs = saved


def default_render_fps(env, n: int) -> float:
    """Frames/s of the same camera with MuJoCo's default visual settings (the reference for the fast path)."""
    base = env.unwrapped
    base.model.vis.quality.offsamples = 4
    renderer = mujoco.Renderer(base.model, base.image_size, base.image_size)
    t0 = time.perf_counter()
    for _ in range(n):
        renderer.update_scene(base.data, camera=base.camera)
        renderer.render()
    renderer.close()
    base.model.vis.quality.offsamples = 0
    return n / (time.perf_counter() - t0)


def fast_render_fps(env, n: int) -> float:
    base = env.unwrapped
    base.render()
    t0 = time.perf_counter()
    for _ in range(n):
        base.render()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--mesh-cell", type=float, default=MESH_CELL, help="render mesh grid in metres (0: full meshes)")
    args = ap.parse_args()
    print(f"MetaWorld at {args.image_size} px, {args.steps} expert steps per figure (MUJOCO_GL={mujoco.__name__ and __import__('os').environ.get('MUJOCO_GL')})")
    print(f"{'task':24s} {'render+step/s':>13s} {'step only/s':>12s} {'render fps':>11s} {'full meshes':>12s} "
          f"{'default fps':>12s} {'vs full':>8s} {'vs default':>11s} {'faces':>14s}")
    for task in METAWORLD_TASK_IDS:
        env = make_env(task, image_size=args.image_size, mesh_cell=args.mesh_cell)
        ref = make_env(task, image_size=args.image_size, mesh_cell=0)
        full, phys = run(env, args.steps, True), run(env, args.steps, False)
        fast = fast_render_fps(env, args.steps)
        ref.reset(seed=0)
        mesh = fast_render_fps(ref, max(10, args.steps // 2))
        slow = default_render_fps(ref, max(10, args.steps // 4))
        lod = env.unwrapped.lod
        faces = f"{lod.faces_before}->{lod.faces_after}" if lod else "full"
        print(f"{task:24s} {full:13.1f} {phys:12.1f} {fast:11.1f} {mesh:12.1f} {slow:12.1f} {fast / mesh:7.1f}x {fast / slow:10.1f}x {faces:>14s}")
        env.close()
        ref.close()


if __name__ == "__main__":
    main()
