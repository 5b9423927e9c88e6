"""`toto-robot tokenize`: train a visual tokenizer and/or write pre-tokenized shards (hydra entry point).

    toto-robot tokenize data=synthetic tokenizer=dvae_tiny train.steps=500
    toto-robot tokenize stage=shards tokenizer_dir=runs/tokenize/<run>/tokenizer data=sim_videos data.datasets.0.path=<videos>
    # the official DALL-E dVAE instead of training (files converted once, see README "Pretrained weights"):
    toto-robot tokenize tokenizer=dvae_8k dalle_encoder=~/w/dalle_encoder.pt dalle_decoder=~/w/dalle_decoder.pt data=...
    # shards on several GPUs or nodes, each rank its share (docs/usage.md "At scale"); stage=all (the default) under
    # torchrun: rank 0 makes the tokenizer while the others wait, then every rank shards:
    torchrun --nproc_per_node=8 -m toto_robot.train.tokenize stage=shards tokenizer_dir=... shards.device=cuda data=...
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.data.tokenize import DatasetSpec, ShardJobConfig, training_frames, write_shards
from toto_robot.tokenizers.training import TokenizerTrainConfig, train_tokenizer
from toto_robot.errors import UserError
from toto_robot.utils.config import ConfigError, check_int
from toto_robot.utils.io import atomic_write


def shard_config(cfg: DictConfig, tokenizer_dir: str) -> ShardJobConfig:
    datasets = [DatasetSpec(**d) for d in OmegaConf.to_container(cfg.data.datasets, resolve=True, throw_on_missing=True)]
    return ShardJobConfig(tokenizer_dir=tokenizer_dir, datasets=datasets, out_dir=str(Path(cfg.out_dir) / "shards"),
                          **OmegaConf.to_container(cfg.shards, resolve=True, throw_on_missing=True))


def run(cfg: DictConfig) -> Path:
    if cfg.stage not in ("train", "shards", "all"):
        raise ConfigError(f"stage must be train, shards or all, got {cfg.stage!r}")
    t = OmegaConf.to_container(cfg.train, resolve=True, throw_on_missing=True)
    max_frames = check_int(t.pop("max_frames"), "train.max_frames", low=1)
    train_cfg = TokenizerTrainConfig(kind=cfg.tokenizer.kind, params=OmegaConf.to_container(cfg.tokenizer.params, resolve=True, throw_on_missing=True),
                                     out_dir=cfg.tokenizer_dir or str(Path(cfg.out_dir) / "tokenizer"), **t)
    shards_cfg = shard_config(cfg, train_cfg.out_dir)  # both configs are checked before any work
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one rank records the job
        with atomic_write(out / "config.yaml", "w") as f:
            f.write(OmegaConf.to_yaml(cfg, resolve=True))
    tokenizer_dir = train_cfg.out_dir
    if cfg.stage in ("train", "all"):
        on_rank_zero(lambda: make_tokenizer(cfg, train_cfg, shards_cfg, max_frames), cfg.shards.device, out)
    if cfg.stage in ("shards", "all"):
        shards = write_shards(shards_cfg)
        print(f"shards: {shards}")
        return shards
    return Path(tokenizer_dir)


def on_rank_zero(job, device: str, folder: Path) -> None:
    """Run ``job`` in this process; under torchrun (WORLD_SIZE > 1) on rank 0 only while the other ranks wait, then tell
    them how it went: a failure there stops every rank (they raise ``RankZeroFailed``, rank 0 its own error). Every rank
    must name the same ``folder`` (what rank 0 makes there, the others read)."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        job()
        return
    import torch.distributed as dist

    from toto_robot.data.tokenize import coordination_group
    from toto_robot.pretrain.distributed import init_distributed

    info = init_distributed(device)
    group = coordination_group(info, folder)  # gloo, with a timeout longer than training a tokenizer takes
    outcome: list = [None]
    error = None
    if info.is_main:
        try:
            job()
        except BaseException as e:  # noqa: BLE001 - the other ranks must hear of it before rank 0 stops
            error, outcome[0] = e, f"{type(e).__name__}: {e}"
    dist.broadcast_object_list(outcome, src=0, group=group)
    if error is not None:
        raise error
    if outcome[0] is not None:
        raise RankZeroFailed(f"rank 0 could not make the tokenizer ({outcome[0]}); rank 0 reports it")


class RankZeroFailed(UserError):
    """Under torchrun: the step rank 0 ran for every rank failed (rank 0 reports why)."""


def make_tokenizer(cfg: DictConfig, train_cfg: TokenizerTrainConfig, shards_cfg: ShardJobConfig, max_frames: int) -> None:
    """The tokenizer of stage train: trained on the data's frames, or the official DALL-E dVAE's weights converted."""
    tokenizer_dir = train_cfg.out_dir
    if cfg.dalle_encoder:
        from toto_robot.tokenizers import build_tokenizer, load_dalle_weights

        if cfg.tokenizer.kind != "dvae":
            raise ConfigError(f"dalle_encoder/dalle_decoder need tokenizer=dvae_8k, not a {cfg.tokenizer.kind!r} tokenizer")
        tok = build_tokenizer("dvae", **OmegaConf.to_container(cfg.tokenizer.params, resolve=True, throw_on_missing=True))
        load_dalle_weights(tok, cfg.dalle_encoder, cfg.dalle_decoder or None)
        tok.save_pretrained(tokenizer_dir)
        print(f"tokenizer: {tokenizer_dir} (official DALL-E weights)")
    else:
        train_tokenizer(train_cfg, training_frames(shards_cfg, max_frames=max_frames))
        metrics = json.loads((Path(tokenizer_dir) / "metrics.json").read_text())
        print(f"tokenizer: {tokenizer_dir} (held-out PSNR {metrics.get('psnr_heldout_db', float('nan')):.2f} dB)")


@hydra.main(config_path="pkg://toto_robot.configs", config_name="tokenize", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":  # python -m / torchrun -m: a user error is one line (on rank 0 only under torchrun), as in toto-robot
    import sys

    from toto_robot.cli import run_command

    sys.exit(run_command(main))
