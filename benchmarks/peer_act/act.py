"""Peer baseline: LeRobot's ACT (lerobot 0.6.1) trained from scratch on this project's demos, scored by
``toto_robot.policies.evaluate.evaluate_policy`` on the same seeded episodes as the project's own policies.

Protocol: ACT with a ResNet-18 backbone and no pretrained weights, chunk_size 20, n_action_steps 1, temporal
ensembling (coeff 0.01), every other ACTConfig field at its lerobot default (VAE on, dim_model 512, ...), mean/std
normalisation from the dataset's stats (lerobot's own pre/post-processors); AdamW from ACT's training preset
(lr 1e-5, weight decay 1e-4, grad-clip norm 10; ``--lr`` sets both parameter groups) on ``get_optim_params()``;
batch 32 drawn by lerobot's EpisodeAwareSampler from a LeRobotDataset (v3.0, exported by ``toto-robot export-demos
format=lerobot``); trained for a wall-clock budget (30 minutes on the 2-core CPU) or ``--max-steps``, whichever ends
first: 1,348 steps is what 30 minutes gave on a quiet machine, and a step count is the same budget on a busy one. Evaluation: seeds 0, 1, 2 x 30 episodes of the
demos' task, the demos' camera rendered as ``image`` at the demos' image size; ``policy.reset()`` at every
episode start (evaluate_policy calls ``reset``); the raw ACT action is sent to the env (``--snap-gripper``
snaps the gripper dim to +-1 as the project's BC policy does; off by default).

Measured (docs/policies.md): on the demo's 150 DART demos, 1,348 steps, ACT solved 1 of the 90 episodes at its
preset lr 1e-5 and 6 of 90 at ``--lr 1e-4`` (training loss 1.10 and 0.51). The earlier ACT run on the plain demos
(51/90) was made before this script existed, with settings that were not kept; this script at ``--lr 1e-4``, 1,348
steps, gets 49/90 on those plain demos (training loss 0.24).

Runs in its own venv (Python 3.11, torch 2.13.0+cpu, lerobot 0.6.1 patched for 3.11), after `make demo`:
    bash benchmarks/peer_act/make_venv.sh                       # .venv-act
    toto-robot export-demos format=lerobot demos=<the demo's demos folder> out_dir=runs/act/demos format.write.use_videos=false
    .venv-act/bin/python benchmarks/peer_act/act.py train --data runs/act/demos --out runs/act/run --minutes 30 [--max-steps 1348 --lr 1e-4]
    .venv-act/bin/python benchmarks/peer_act/act.py eval --out runs/act/run
    python benchmarks/bc_table.py toto=<the demo's compare folder>:toto act=runs/act/run:act --markdown
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from toto_robot.utils.io import atomic_save_json


def train(args) -> None:
    from tqdm.auto import tqdm
    from lerobot.datasets import EpisodeAwareSampler
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.policies import make_policy, make_pre_post_processors
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.utils.random_utils import set_seed
    from lerobot.utils.utils import cycle

    set_seed(args.seed)
    cfg = ACTConfig(vision_backbone="resnet18", pretrained_backbone_weights=None, chunk_size=args.chunk_size,
                    n_action_steps=1, temporal_ensemble_coeff=args.temporal_ensemble_coeff, device="cpu",
                    optimizer_lr=args.lr, optimizer_lr_backbone=args.lr)
    meta = LeRobotDatasetMetadata("local/demos", root=args.data)
    dataset = LeRobotDataset("local/demos", root=args.data, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    policy = make_policy(cfg, ds_meta=dataset.meta)  # input/output features from the dataset
    pre, post = make_pre_post_processors(cfg, dataset_stats=dataset.meta.stats)
    opt_cfg = cfg.get_optimizer_preset()
    optimizer = opt_cfg.build(policy.get_optim_params())
    sampler = EpisodeAwareSampler(dataset.meta.episodes["dataset_from_index"], dataset.meta.episodes["dataset_to_index"],
                                  episode_indices_to_use=dataset.episodes, drop_n_last_frames=0, shuffle=True, seed=args.seed,
                                  absolute_to_relative_idx=dataset.absolute_to_relative_idx)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                                         persistent_workers=args.workers > 0, drop_last=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    toto = json.loads((Path(args.data) / "meta" / "toto_demo.json").read_text())
    cam_key = next(iter(cfg.image_features))
    env_meta = {"task": toto["task"], "image_size": int(toto["image_size"][0]), "camera": toto["extra"].get("camera", cam_key.split(".")[-1]),
                "image_key": cam_key, **({"max_steps": toto["extra"]["max_steps"]} if toto["extra"].get("max_steps") else {})}
    atomic_save_json(env_meta, out / "toto_env.json")
    print(f"{dataset.num_episodes} episodes, {dataset.num_frames} frames; inputs {list(cfg.input_features)}; "
          f"{sum(p.numel() for p in policy.parameters()) / 1e6:.1f}M params; torch threads {torch.get_num_threads()}")

    def save(step: int, elapsed: float, losses: list[float]) -> None:
        policy.save_pretrained(out)
        pre.save_pretrained(out)
        post.save_pretrained(out)
        atomic_save_json({"steps": step, "seconds": elapsed, "seed": args.seed, "batch_size": args.batch_size, "minutes": args.minutes, "max_steps": args.max_steps, "lr": args.lr,
                          "loss_last100": float(np.mean(losses[-100:])) if losses else None, "data": str(args.data)},
                         out / "train_log.json")

    budget, start, last_save, step, losses = args.minutes * 60, time.time(), time.time(), 0, []
    batches = cycle(loader)
    policy.train()
    bar = tqdm(total=int(budget), unit="s", desc="train ACT", bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}s {postfix}")
    while time.time() - start < budget and (args.max_steps is None or step < args.max_steps):
        batch = pre(next(batches))
        loss, info = policy.forward(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), opt_cfg.grad_clip_norm)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        losses.append(loss.item())
        bar.n = min(int(time.time() - start), int(budget))
        bar.set_postfix(step=step, loss=f"{np.mean(losses[-50:]):.3f}", l1=f"{info['l1_loss']:.3f}", refresh=True)
        if time.time() - last_save > args.save_every * 60:
            save(step, time.time() - start, losses)
            last_save = time.time()
    bar.close()
    elapsed = time.time() - start
    save(step, elapsed, losses)
    print(f"steps done: {step} in {elapsed:.0f}s ({step / elapsed:.2f} steps/s); saved to {out}")


class ACTAgent:
    """What evaluate_policy drives: ``meta`` picks the env's camera / image size, ``reset()`` runs at each episode
    start, ``act(obs)`` maps the env's uint8 HxWx3 ``image`` and ``state`` to one action."""

    def __init__(self, out: Path, snap_gripper: bool = False):
        from lerobot.policies import make_pre_post_processors
        from lerobot.policies.act.modeling_act import ACTPolicy

        self.policy = ACTPolicy.from_pretrained(out)
        self.policy.eval()
        self.pre, self.post = make_pre_post_processors(self.policy.config, pretrained_path=str(out))
        self.meta = json.loads((out / "toto_env.json").read_text())
        self.snap_gripper = snap_gripper

    def reset(self) -> None:
        self.policy.reset()

    @torch.no_grad()
    def act(self, obs: dict) -> np.ndarray:
        image = torch.from_numpy(np.ascontiguousarray(obs["image"])).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W) in [0, 1]
        state = torch.from_numpy(np.asarray(obs["state"], dtype=np.float32))[None]
        batch = self.pre({self.meta["image_key"]: image, "observation.state": state})
        action = self.post(self.policy.select_action(batch))[0].numpy().astype(np.float32)
        if self.snap_gripper:
            action[-1] = 1.0 if action[-1] > 0 else -1.0
        return action


def evaluate(args) -> None:
    from toto_robot.policies.evaluate import evaluate_policy

    torch.manual_seed(0)  # ACT's VAE samples no latent at inference; this only fixes anything stray
    out = Path(args.out)
    agent = ACTAgent(out, args.snap_gripper)
    task = args.task or agent.meta["task"]
    total = 0
    for seed in args.seeds:  # one eval.json per seed in compare's layout: benchmarks/bc_table.py pools and pairs them by episode
        r = evaluate_policy(agent, task, episodes=args.episodes, seed=seed, image_size=agent.meta["image_size"])
        seed_dir = out / "runs" / task / "act" / f"seed{seed}"
        seed_dir.mkdir(parents=True, exist_ok=True)
        atomic_save_json({**r, "snap_gripper": args.snap_gripper}, seed_dir / "eval.json")
        total += r["successes"]
        print(f"seed {seed}: {r['successes']}/{args.episodes}  (mean length {r['mean_length']:.1f})", flush=True)
    print(f"total: {total}/{args.episodes * len(args.seeds)}  (pooled with earlier seeds: benchmarks/bc_table.py act={out}:act)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train ACT for a wall-clock budget")
    t.add_argument("--data", required=True, help="LeRobot v3.0 dataset root (export-demos format=lerobot)")
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=30.0)
    t.add_argument("--max-steps", type=int, default=None,
                   help="stop here if the time budget has not run out (a fixed step count is the same budget on a busy machine)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--chunk-size", type=int, default=20)
    t.add_argument("--lr", type=float, default=1e-5, help="AdamW lr of every parameter group (ACT's preset: 1e-5)")
    t.add_argument("--temporal-ensemble-coeff", type=float, default=0.01)
    t.add_argument("--workers", type=int, default=1, help="DataLoader workers (lerobot's default is 4; the machine has 2 cores)")
    t.add_argument("--save-every", type=float, default=5.0, help="minutes between saves")
    e = sub.add_parser("eval", help="score a saved ACT with toto_robot's evaluate_policy")
    e.add_argument("--out", required=True)
    e.add_argument("--task", default=None, help="default: the demos' task")
    e.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    e.add_argument("--episodes", type=int, default=30)
    e.add_argument("--snap-gripper", action="store_true")
    args = p.parse_args()
    train(args) if args.cmd == "train" else evaluate(args)


if __name__ == "__main__":
    main()
