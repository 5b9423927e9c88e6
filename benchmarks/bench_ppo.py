"""PPO throughput on a frozen encoder: environment steps per second of the whole PPO loop (rollouts and
updates, ``train_ppo`` from start to saved policy) with the backbone run once per env step
(``cache_tokens=true``) and inside SB3's feature extractor (``false``: re-encoded on every forward, in
the rollout and in each of the ``n_epochs`` update passes), against the raw rate of the same
vectorised envs under random actions (the ceiling: rendering and physics only), all in one process.
    MUJOCO_GL=egl python benchmarks/bench_ppo.py [--task franka_reach] [--steps 2048] [--n-envs 4]
        [--encoder '{"name": "toto", "checkpoint": "runs/pre/final", "layer": 3, "pooling": "spatial_attention"}']
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


def raw_env_rate(task: str, n_envs: int, steps: int, image_size: int) -> float:
    """Env steps/s of ``n_envs`` DummyVecEnv envs under random actions (what PPO's rollouts cannot beat)."""
    from stable_baselines3.common.env_util import make_vec_env

    from toto_robot.sim_envs import TASK_IDS

    venv = make_vec_env(f"toto_robot.sim_envs:{TASK_IDS[task][0]}", n_envs=n_envs, seed=0, env_kwargs={"image_size": image_size})
    rng = np.random.default_rng(0)
    venv.reset()
    t0 = time.perf_counter()
    for _ in range(steps // n_envs):
        venv.step(rng.uniform(-1, 1, (n_envs, *venv.action_space.shape)).astype(np.float32))
    rate = (steps // n_envs) * n_envs / (time.perf_counter() - t0)
    venv.close()
    return rate


def ppo_rate(task: str, encoder: dict, n_envs: int, steps: int, image_size: int, cache_tokens: bool, n_epochs: int) -> float:
    from toto_robot.policies.ppo import PPOConfig, train_ppo

    with tempfile.TemporaryDirectory() as tmp:
        cfg = PPOConfig(task=task, out_dir=tmp, encoder=dict(encoder), image_size=image_size, total_timesteps=steps, n_envs=n_envs,
                        n_steps=max(16, steps // n_envs), batch_size=min(128, steps), n_epochs=n_epochs, eval_episodes=0, cache_tokens=cache_tokens)
        t0 = time.perf_counter()
        train_ppo(cfg)
        return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="franka_reach")
    ap.add_argument("--encoder", default='{"name": "random", "pooling": "spatial_attention"}', help="build_encoder kwargs as JSON")
    ap.add_argument("--steps", type=int, default=2048, help="environment steps per PPO run (one rollout of n_steps x n_envs)")
    ap.add_argument("--n-envs", type=int, default=4)
    ap.add_argument("--n-epochs", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=64)
    args = ap.parse_args()
    encoder = json.loads(args.encoder)
    raw = raw_env_rate(args.task, args.n_envs, args.steps, args.image_size)
    cached = ppo_rate(args.task, encoder, args.n_envs, args.steps, args.image_size, True, args.n_epochs)
    inside = ppo_rate(args.task, encoder, args.n_envs, args.steps, args.image_size, False, args.n_epochs)
    print(f"PPO on {args.task}, {args.n_envs} envs at {args.image_size} px, {args.steps} env steps, {args.n_epochs} update epochs, "
          f"encoder {encoder}")
    print(f"{'loop':34s} {'env steps/s':>12s} {'vs raw envs':>12s}")
    print(f"{'raw envs, random actions':34s} {raw:12.1f} {1.0:11.2f}x")
    print(f"{'PPO, tokens cached (default)':34s} {cached:12.1f} {cached / raw:11.2f}x")
    print(f"{'PPO, backbone in the extractor':34s} {inside:12.1f} {inside / raw:11.2f}x")
    print(f"caching the frozen tokens: {cached / inside:.2f}x the PPO loop's rate")


if __name__ == "__main__":
    main()
