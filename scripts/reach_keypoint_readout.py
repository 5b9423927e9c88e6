"""What an untrained keypoints pool already says about the reach target: ridge regression from its
keypoints over each frozen encoder's tokens to the target's (x, y), scored by the share of held-out
frames placed within 4 cm (reach's success distance).

    MUJOCO_GL=egl OMP_NUM_THREADS=1 python scripts/reach_keypoint_readout.py \
        --toto runs/demo-cache/pretrain-452da43132/run/final --mae runs/demo-cache/mae-a3e7786f42/mae_vit.safetensors

Two frame sets, 800 each, the first 600 to fit and the last 200 to score: the first frame of 800 seeded
episodes (the arm at home), and frames 1-8 of 100 episodes under random actions (the arm moves and can
cover the target). Also printed: the keypoints' spread (their standard deviation over frames, mean over
keypoints), which is why ``KeypointPool`` standardises its output, and the same regression from average-
pooled tokens. The ridge strength is the best of a grid on the held-out frames (an upper bound).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


def frames(moving: bool, n: int = 800) -> tuple[np.ndarray, np.ndarray]:
    from toto_robot.sim_envs import make_env

    env = make_env("franka_reach", image_size=64).unwrapped
    rng = np.random.default_rng(0)
    images, targets = [], []
    for episode in range(n if not moving else n // 8):
        obs, _ = env.reset(seed=episode)
        for _ in range(8 if moving else 1):
            if moving:
                obs, *_ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
            images.append(obs["image"])
            targets.append(env.task.target_pos(env)[:2])
    env.close()
    return np.stack(images), np.stack(targets)


def within_4cm(features: np.ndarray, targets: np.ndarray, n_fit: int = 600) -> float:
    f = (features - features[:n_fit].mean(0)) / (features[:n_fit].std(0) + 1e-12)
    fit, held = np.c_[f[:n_fit], np.ones(n_fit)], np.c_[f[n_fit:], np.ones(len(f) - n_fit)]
    best = np.inf
    for alpha in np.logspace(-4, 3, 8):
        w = np.linalg.solve(fit.T @ fit + alpha * np.eye(fit.shape[1]), fit.T @ targets[:n_fit])
        err = np.linalg.norm(held @ w - targets[n_fit:], axis=1)
        if (err ** 2).sum() < best:
            best, share = (err ** 2).sum(), float((err < 0.04).mean())
    return share


def add_encoder_args(ap: argparse.ArgumentParser) -> None:
    """--toto (required), --toto-layer, --mae, --mae-layer: the encoders these reach diagnostics compare."""
    ap.add_argument("--toto", required=True, help="a Toto pre-training run's final/ folder")
    ap.add_argument("--toto-layer", type=int, default=3)
    ap.add_argument("--mae", help="a mae_tiny checkpoint (optional)")
    ap.add_argument("--mae-layer", type=int, default=4)


def encoder_specs(args: argparse.Namespace, pooling: str = "keypoints") -> dict[str, dict]:
    """Toto, its random-init control (same architecture, seed 0) and MAE-tiny if given -> encoder specs."""
    specs = {"Toto": {"name": "toto", "checkpoint": args.toto, "layer": args.toto_layer, "pooling": pooling},
             "random-init": {"name": "random", "like": args.toto, "layer": args.toto_layer, "pooling": pooling, "seed": 0}}
    if args.mae:
        specs["MAE-tiny"] = {"name": "mae_tiny", "checkpoint": args.mae, "layer": args.mae_layer, "pooling": pooling}
    return specs


def main() -> None:
    from toto_robot.encoders import encoder_from_spec

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_encoder_args(ap)
    specs = encoder_specs(ap.parse_args())
    sets = {"arm at home": frames(False), "random actions": frames(True)}
    print(f"{'encoder':12s} {'frames':15s} {'keypoints <4cm':>15s} {'average pool <4cm':>18s} {'keypoint spread':>16s}")
    for name, spec in specs.items():
        torch.manual_seed(0)
        enc = encoder_from_spec(spec).eval()
        for label, (images, targets) in sets.items():
            with torch.no_grad():
                tokens = torch.cat([enc.encode_tokens(images[i:i + 100]).float() for i in range(0, len(images), 100)])
                keypoints = enc.pool.keypoints(tokens).reshape(len(images), -1).double().numpy()
            print(f"{name:12s} {label:15s} {within_4cm(keypoints, targets):15.2f} {within_4cm(tokens.mean(1).double().numpy(), targets):18.2f} "
                  f"{keypoints.std(0).mean():16.4f}")


if __name__ == "__main__":
    main()
