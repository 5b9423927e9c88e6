"""Pre-train a Toto like the demo's on more simulated footage: every task BC is scored on, every camera it reads.

The demo's Toto-tiny sees 300 steps of wrist-camera pick videos (two tasks, 40 + 8 episodes each). The four-task
compare reads the front *and* the wrist camera on picks *and* cabinets, so most of what BC encodes is footage
the encoder never saw. This script collects the scripted experts' videos (plus random-action ones) of each
task from each camera, under the demos' visual randomization, and pre-trains a fresh Toto of the demo's
architecture, tokenizer and clip layout on them (``pretrain_like``), for as many steps as you give. The
random-init control of the new checkpoint is the same network as the old one's (same architecture, same
seed), so compare rows of ``random`` pair with it unchanged. With ``--mae`` it also trains the demo's MAE-tiny
baseline on frames of the same clips for the FLOPs this Toto measured (the demo's ``mae_match=flops``), so
MAE-tiny compares with it at matched compute.

    python benchmarks/pretrain_sim.py --like runs/demo-cache/pretrain-452da43132/run/final --steps 3000 \
        --out runs/pre4/ps0 --pipeline-seed 0
    # then: toto-robot compare ... encoders.toto.checkpoint=runs/pre4/ps0/run/final
    #   and with --mae: "+encoders.mae={name:mae_tiny,checkpoint:runs/pre4/ps0/mae/mae_vit.safetensors,layer:4,pooling:grid}"

Interrupted runs resume (collection skips finished episodes, pre-training restarts from its checkpoint, a finished
MAE is reused).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from toto_robot.demo.pipeline import collect_pretraining_videos, mae_steps_for_flops, train_mae_baseline
from toto_robot.pretrain.footage import FootageRecipe, footage_job, pretrain_like

TASKS = ["franka_pick", "kuka_pick", "franka_cabinet", "kuka_cabinet"]
CAMERAS = ["wrist", "agentview"]


def collect_footage(out: Path, tasks: list[str], cameras: list[str], episodes: int, random_episodes: int, image_size: int,
                    pipeline_seed: int) -> list[Path]:
    """The demo's pre-training footage (``collect_pretraining_videos``) of every task from every camera -> its video folders."""
    folders = []
    for task in tasks:
        for cam in cameras:
            expert, rand = out / "videos" / f"{task}_{cam}", out / "videos" / f"random_{task}_{cam}"
            collect_pretraining_videos(task, cam, expert, rand, episodes, random_episodes, image_size, pipeline_seed, expert_preview=0)
            folders += [expert / "videos", *([rand / "videos"] if random_episodes else [])]
    return folders


def mae_matched(like: str, folders: list[Path], out: Path, recipe: FootageRecipe, toto_flops: float, batch_size: int = 64,
                max_frames: int = 32768) -> Path:
    """The demo's MAE-tiny baseline (``mae_tiny``, batch 64, its lr schedule) trained on frames of the clips the Toto run
    tokenized, for as many steps as ``toto_flops`` buy at MAE's measured cost per step -> its dir (reused once finished)."""
    from toto_robot.data.tokenize import training_frames

    d = out / "mae"
    if (d / "metrics.json").exists():
        return d
    job = footage_job(like, folders, out, recipe)
    frames = training_frames(job, max_frames=max_frames)  # uint8 [N, R, R, 3]
    return train_mae_baseline(d, frames, mae_steps_for_flops(toto_flops, job.resolution, batch_size), batch_size,
                              holdout=min(128, len(frames) // 4), seed=recipe.seed, device=recipe.device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--like", required=True, help="a Toto pre-training final/ dir: its architecture, tokenizer and clip layout")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--cameras", nargs="+", default=CAMERAS)
    ap.add_argument("--episodes", type=int, default=60, help="expert episodes per task and camera")
    ap.add_argument("--random-episodes", type=int, default=12, help="random-action episodes per task and camera")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--clips-per-video", type=int, default=4)
    ap.add_argument("--pipeline-seed", type=int, default=0, help="seeds the footage and the pre-training")
    ap.add_argument("--mae", action="store_true", help="also train MAE-tiny on the same clips for this Toto's measured FLOPs")
    ap.add_argument("--mae-frames", type=int, default=32768, help="frames MAE-tiny trains on, drawn from the same clips")
    ap.add_argument("--mae-batch", type=int, default=64, help="MAE-tiny's batch (the demo's: 64)")
    args = ap.parse_args()

    out = Path(args.out)
    t0 = time.perf_counter()
    folders = collect_footage(out, args.tasks, args.cameras, args.episodes, args.random_episodes, args.image_size, args.pipeline_seed)
    t1 = time.perf_counter()
    recipe = FootageRecipe(steps=args.steps, batch_tokens=args.batch_tokens, clips_per_video=args.clips_per_video, bundled_images=64,
                           seed=args.pipeline_seed)
    final = pretrain_like(args.like, folders, out, recipe)
    metrics = json.loads((final.parent / "metrics.json").read_text())
    summary = {"args": vars(args), "videos": sum(len(list(f.glob("*.mp4"))) for f in folders), "collect_s": round(t1 - t0, 1),
               "pretrain_s": round(time.perf_counter() - t1, 1), "final": str(final),
               **{k: metrics.get(k) for k in ("final_loss", "eval_loss", "train_flops", "steps")}}
    if args.mae:
        t2 = time.perf_counter()
        d = mae_matched(args.like, folders, out, recipe, metrics["train_flops"], args.mae_batch, args.mae_frames)
        mae = {**json.loads((d / "mae_config.json").read_text()), **json.loads((d / "metrics.json").read_text())}
        summary["mae"] = {"dir": str(d), "mae_s": round(time.perf_counter() - t2, 1),
                          **{k: mae.get(k) for k in ("steps", "batch_size", "train_flops", "final_loss", "heldout_loss")}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
