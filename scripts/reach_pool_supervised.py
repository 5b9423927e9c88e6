"""How precisely a pool *trained with supervision* places the reach target from frozen tokens: the
ceiling of what PPO's pool could learn from each camera, scored as the share of held-out frames
placed within 4 cm (reach's success distance) and the median error.

    MUJOCO_GL=egl python scripts/reach_pool_supervised.py --toto runs/demo-cache/pretrain-452da43132/run/final \
        [--mae runs/demo-cache/mae-a3e7786f42/mae_vit.safetensors] [--cameras agentview,workspace]

Frames: every second step of 12-step episodes of a noisy scripted reach (the arm moves toward the target
with a random gain and noise, as a learning policy does): 400 episodes to train, 100 other episodes held
out. For each encoder and pooling (keypoints, spatial attention), a fresh pool and a linear head regress
the target's (x, y) on the table (standardised) with Adam (lr 1e-3, 3000 steps of 128 frames);
``--target offset`` regresses where the target lies relative to the gripper instead (x, y, z), which is
what a reaching policy needs and what a camera on the hand sees directly.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


def episodes(camera: str, n: int, first_seed: int, image_size: int = 64, target: str = "table") -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames [M, S, S, 3] and the target's table (x, y) [M, 2] (or its offset from the gripper
    [M, 3]) from n noisy scripted reaches."""
    from toto_robot.sim_envs import make_env

    env = make_env("franka_reach", image_size=image_size, camera=camera).unwrapped
    rng = np.random.default_rng(first_seed)
    images, targets = [], []
    for episode in range(n):
        env.reset(seed=first_seed + episode)
        noise = rng.uniform(0, 1)
        for t in range(12):
            toward = np.clip((env.task.target_pos(env) - env.grip_pos()) / env.max_delta, -1, 1)
            action = np.r_[np.clip(toward * rng.uniform(0, 1) + rng.normal(0, noise, 3), -1, 1), -1].astype(np.float32)
            obs, _, done, _, _ = env.step(action)
            if t % 2 == 0:
                images.append(obs["image"])
                where = env.task.target_pos(env)
                targets.append(where[:2] if target == "table" else where - env.grip_pos())
            if done:
                break
    env.close()
    return np.stack(images), np.stack(targets).astype(np.float32)


def fit_and_score(spec: dict, train, held, steps: int = 3000) -> tuple[float, float]:
    """A fresh pool + linear head trained on ``train`` -> (share within 4 cm, median error in cm) on ``held``."""
    from toto_robot.encoders import encoder_from_spec

    torch.manual_seed(0)
    enc = encoder_from_spec(spec)
    with torch.no_grad():
        tokens = [torch.cat([enc.encode_tokens(x[i:i + 256]).float() for i in range(0, len(x), 256)]) for x in (train[0], held[0])]
    mean, std = train[1].mean(0), train[1].std(0)
    y = torch.as_tensor((train[1] - mean) / std)
    head = torch.nn.Linear(enc.feature_dim, y.shape[1])
    opt = torch.optim.Adam([*enc.pool.parameters(), *head.parameters()], lr=1e-3)
    enc.pool.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (128,))
        loss = torch.nn.functional.mse_loss(head(enc.pool(tokens[0][idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.pool.eval()
    with torch.no_grad():
        pred = head(enc.pool(tokens[1])).numpy() * std + mean
    err = np.linalg.norm(pred - held[1], axis=1)
    return float((err < 0.04).mean()), float(100 * np.median(err))


def main() -> None:
    from reach_keypoint_readout import add_encoder_args, encoder_specs  # (this folder)

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_encoder_args(ap)
    ap.add_argument("--cameras", default="agentview,workspace")
    ap.add_argument("--target", choices=("table", "offset"), default="table")
    args = ap.parse_args()
    specs = encoder_specs(args)
    print(f"{'camera':10s} {'encoder':12s} {'pooling':18s} {'within 4 cm':>12s} {'median error':>13s}")
    for camera in args.cameras.split(","):
        train, held = episodes(camera, 400, 0, target=args.target), episodes(camera, 100, 10_000, target=args.target)
        for name, spec in specs.items():
            for pooling in ("keypoints", "spatial_attention"):
                share, median = fit_and_score({**spec, "pooling": pooling}, train, held)  # (the spec's pooling replaced)
                print(f"{camera:10s} {name:12s} {pooling:18s} {share:12.2f} {median:10.1f} cm", flush=True)


if __name__ == "__main__":
    main()
