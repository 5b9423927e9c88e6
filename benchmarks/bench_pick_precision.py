"""How precisely must a Franka-pick policy know where the cube is? Behaviour cloning on the state plus
the true cube position, with a fixed per-episode position error of sigma metres at evaluation (and as
training noise). sigma = 0 is the reference: it shows BC itself can learn the task from these demos.
    MUJOCO_GL=egl python benchmarks/bench_pick_precision.py [--demos 150] [--episodes 20] [--sigmas 0,0.01,0.02]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from toto_robot.sim_envs import make_env
from toto_robot.sim_envs.experts import make_expert


def collect(env, episodes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Expert episodes (noise 0.1, as `toto-robot collect`) -> state [N, 19], cube position [N, 3], action [N, 4]."""
    states, cubes, actions = [], [], []
    for ep in tqdm(range(episodes), desc="expert demos", unit="ep"):
        obs, _ = env.reset(seed=ep)
        expert = make_expert(env, noise=0.1, rng=np.random.default_rng(ep))
        done = False
        while not done:
            a = expert.act(obs)
            states.append(obs["state"])
            cubes.append(env.task.cube_pos(env))
            actions.append(a)
            obs, _, term, trunc, _ = env.step(a)
            done = term or trunc or env.steps >= env.max_steps
    return tuple(torch.tensor(np.array(v), dtype=torch.float32) for v in (states, cubes, actions))


def train(states, cubes, actions, sigma: float, steps: int = 6000) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.cat([states, cubes], 1)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-3)
    net = nn.Sequential(nn.Linear(x.shape[1], 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(), nn.Linear(256, actions.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(actions), (64,))
        noisy = torch.cat([states[idx], cubes[idx] + sigma * torch.randn_like(cubes[idx])], 1)
        loss = (torch.tanh(net((noisy - mean) / std)) - actions[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, mean, std


@torch.no_grad()
def success_rate(env, net, mean, std, sigma: float, episodes: int) -> int:
    wins = 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=10_000 + ep)  # held-out seeds
        error = sigma * np.random.default_rng(ep).normal(size=3)  # one wrong belief for the whole episode
        done, success = False, False
        while not done:
            x = torch.cat([torch.from_numpy(obs["state"]), torch.tensor(env.task.cube_pos(env) + error, dtype=torch.float32)])
            a = torch.tanh(net((x - mean) / std)).numpy()
            a[-1] = 1.0 if a[-1] > 0 else -1.0
            obs, _, term, trunc, info = env.step(a)
            success = success or info["success"]
            done = term or trunc or env.steps >= env.max_steps
        wins += success
    return wins


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demos", type=int, default=150)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--sigmas", default="0,0.01,0.02")
    args = ap.parse_args()
    env = make_env("franka_pick", image_size=16).unwrapped  # the camera is not used
    data = collect(env, args.demos)
    reference = None
    for sigma in (float(s) for s in args.sigmas.split(",")):
        net, mean, std = train(*data, sigma)
        wins = success_rate(env, net, mean, std, sigma, args.episodes)
        reference = wins if reference is None else reference
        ratio = f"{wins / reference:.2f}x the first row" if reference else "-"
        print(f"cube position error {100 * sigma:4.1f} cm: {wins}/{args.episodes} successes ({ratio})")


if __name__ == "__main__":
    main()
