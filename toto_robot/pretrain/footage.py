"""Pre-train a Toto like another one on other footage: the same architecture, tokenizer, clip layout and
schedule, only the videos differ.

What the README tells a user with a real camera to do is to pre-train on the robot's own footage. Judging
that honestly needs one pre-training per held-out split (the held-out episodes' frames must never reach the
encoder), so it has to be one call: ``pretrain_like(<a checkpoint>, [<video folders>], out)`` reads the
model config and the tokenizer from ``<checkpoint>/config.json`` and ``data.json``, writes token shards of the
videos (plus the bundled images, as the real-camera recipe packs them) and pre-trains with the demo's
schedule (``demo_schedule``, which ``toto-robot demo`` uses too). ``episode_videos`` writes a demo folder's
episodes, every camera, as the H.264 videos it reads.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from toto_robot.constants import CONFIG_NAME
from toto_robot.errors import UserError

log = logging.getLogger(__name__)

ARCH_FIELDS = ("n_layer", "n_head", "n_kv_head", "n_embd", "mlp_hidden", "block_size", "tokens_per_frame", "rope_base", "norm_eps",
               "tie_embeddings", "dropout")


@dataclass
class FootageRecipe:
    """The real-camera recipe's pre-training (configs/demo_real.yaml) on any footage."""
    steps: int = 1000
    batch_tokens: int = 8192
    clips_per_video: int = 64
    bundled_images: int = 64  # the bundled sample images packed as image sequences (0: none)
    stride: int = 4
    seed: int = 0
    device: str = "cpu"


def demo_schedule(shards: str, out_dir: str, model: str, overrides: dict, steps: int, batch_tokens: int, seed: int, device: str,
                  fast: bool = False, resume: bool = False):
    """The pre-training schedule of ``toto-robot demo`` (minutes on a CPU): lr 3e-3 -> 3e-4 cosine after a tenth of the steps
    of warm-up, weight decay 0.05, micro-batches of 8 sequences -> ``PretrainConfig``."""
    from toto_robot.pretrain.trainer import PretrainConfig

    return PretrainConfig(shards=shards, out_dir=out_dir, model=model, model_overrides=overrides, lr=1e-3 if fast else 3e-3, min_lr=3e-4,
                          warmup_steps=max(1, steps // 10), max_steps=steps, batch_tokens=batch_tokens, micro_batch=4 if fast else 8,
                          weight_decay=0.05, log_every=max(1, steps // 50), checkpoint_every=100, eval_sequences=4 if fast else 32,
                          resume=resume, device=device, seed=seed)


def checkpoint_layout(checkpoint: str | Path) -> tuple[dict, dict, Path]:
    """A pre-training ``final/`` dir -> (its model config, its shards' layout (resolution, num_frames), its tokenizer dir)."""
    ck = Path(checkpoint).expanduser()
    files = [ck / CONFIG_NAME, ck / "data.json", ck / "tokenizer"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise UserError(f"{ck} is not a Toto pre-training dir (its final/): missing {', '.join(missing)}")
    model = json.loads(files[0].read_text())
    data = json.loads(files[1].read_text())["tokenizer"]
    return model, data, files[2]


def footage_job(checkpoint: str | Path, video_folders: list[str | Path], out: str | Path, recipe: FootageRecipe):
    """The shard job ``pretrain_like`` tokenizes: ``video_folders`` (plus the recipe's bundled images) cut into
    ``checkpoint``'s clip layout with its tokenizer, written to ``out/shards`` -> ``ShardJobConfig``. A baseline trained on
    the same footage draws its frames from this job (``training_frames``), so both see the same clips."""
    from toto_robot.data.tokenize import DatasetSpec, ShardJobConfig

    _, data, tokenizer = checkpoint_layout(checkpoint)
    datasets = [DatasetSpec(name=f"footage_{k}", kind="video", path=str(Path(f).resolve()), clips_per_video=recipe.clips_per_video)
                for k, f in enumerate(video_folders)]
    if recipe.bundled_images:
        datasets.append(DatasetSpec(name="images", kind="bundled_images", count=recipe.bundled_images))
    return ShardJobConfig(tokenizer_dir=str(tokenizer), datasets=datasets, out_dir=str(Path(out) / "shards"), resolution=data["resolution"],
                          num_frames=data["num_frames"], stride=recipe.stride, workers=2, seed=recipe.seed, device=recipe.device)


def pretrain_like(checkpoint: str | Path, video_folders: list[str | Path], out: str | Path, recipe: FootageRecipe) -> Path:
    """Pre-train a fresh Toto of ``checkpoint``'s architecture, tokenizer and clip layout on the videos of ``video_folders`` (with
    the recipe's bundled images) -> its ``final/`` dir under ``out``. A finished run is reused; an interrupted one resumes."""
    from toto_robot.data.tokenize import write_shards
    from toto_robot.model.toto import CONFIGS
    from toto_robot.pretrain.trainer import pretrain

    out = Path(out)
    final = out / "run" / "final"
    if (final / CONFIG_NAME).exists():
        return final
    model, _, _ = checkpoint_layout(checkpoint)
    job = footage_job(checkpoint, video_folders, out, recipe)
    write_shards(job)  # skips the units an interrupted call already wrote
    shards = Path(job.out_dir)
    overrides = {k: model[k] for k in ARCH_FIELDS if k in model}
    if model.get("vocab_size") and not model.get("input_dim"):  # a codebook model; a patch model's input size comes from the shards
        overrides["vocab_size"] = model["vocab_size"]
    name = model["name"] if model.get("name") in CONFIGS else "toto_tiny"  # every architecture field is overridden anyway
    run = out / "run"
    pretrain(demo_schedule(str(shards), str(run), name, overrides, recipe.steps, recipe.batch_tokens, recipe.seed, recipe.device,
                           resume=(run / "checkpoint").exists()))
    return final


def episode_videos(eps: list[dict], ids: list[int], cameras: list[str], folder: str | Path, fps: int = 10) -> Path:
    """Episodes ``ids`` of a demo folder (``open_demos`` dicts), each of ``cameras``, as H.264 videos in ``folder`` (written once)."""
    from toto_robot.data.video import write_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in ids:
        for cam in cameras:
            path = folder / f"episode_{i:06d}_{cam}.mp4"
            if not path.exists():
                write_video(path, eps[i][cam], fps=fps)
    return folder
