"""`toto-robot tokenize`: train a visual tokenizer and/or write pre-tokenized shards (hydra entry point).

    toto-robot tokenize data=synthetic tokenizer=dvae_tiny train.steps=500
    toto-robot tokenize stage=shards tokenizer_dir=runs/tokenize/<run>/tokenizer data=sim_videos data.datasets.0.path=<videos>
    # the official DALL-E dVAE instead of training (files converted once, see README "Pretrained weights"):
    toto-robot tokenize tokenizer=dvae_8k dalle_encoder=~/w/dalle_encoder.pt dalle_decoder=~/w/dalle_decoder.pt data=...
    # shards on several GPUs or nodes, each rank its share (docs/usage.md "At scale"):
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
from toto_robot.utils.config import ConfigError, check_int
from toto_robot.utils.io import atomic_write


def shard_config(cfg: DictConfig, tokenizer_dir: str) -> ShardJobConfig:
    datasets = [DatasetSpec(**d) for d in OmegaConf.to_container(cfg.data.datasets, resolve=True, throw_on_missing=True)]
    return ShardJobConfig(tokenizer_dir=tokenizer_dir, datasets=datasets, out_dir=str(Path(cfg.out_dir) / "shards"),
                          **OmegaConf.to_container(cfg.shards, resolve=True, throw_on_missing=True))


def run(cfg: DictConfig) -> Path:
    if cfg.stage not in ("train", "shards", "all"):
        raise ConfigError(f"stage must be train, shards or all, got {cfg.stage!r}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and cfg.stage != "shards":
        raise ConfigError(f"under torchrun only stage=shards runs on several ranks, got stage={cfg.stage}: make the tokenizer "
                          "with one process first (stage=train), then pass tokenizer_dir=<that out_dir>/tokenizer")
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
    if cfg.dalle_encoder and cfg.stage in ("train", "all"):
        from toto_robot.tokenizers import build_tokenizer, load_dalle_weights

        if cfg.tokenizer.kind != "dvae":
            raise ConfigError(f"dalle_encoder/dalle_decoder need tokenizer=dvae_8k, not a {cfg.tokenizer.kind!r} tokenizer")
        tok = build_tokenizer("dvae", **OmegaConf.to_container(cfg.tokenizer.params, resolve=True, throw_on_missing=True))
        load_dalle_weights(tok, cfg.dalle_encoder, cfg.dalle_decoder or None)
        tok.save_pretrained(tokenizer_dir)
        print(f"tokenizer: {tokenizer_dir} (official DALL-E weights)")
    elif cfg.stage in ("train", "all"):
        train_tokenizer(train_cfg, training_frames(shards_cfg, max_frames=max_frames))
        metrics = json.loads((Path(tokenizer_dir) / "metrics.json").read_text())
        print(f"tokenizer: {tokenizer_dir} (held-out PSNR {metrics.get('psnr_heldout_db', float('nan')):.2f} dB)")
    if cfg.stage in ("shards", "all"):
        shards = write_shards(shards_cfg)
        print(f"shards: {shards}")
        return shards
    return Path(tokenizer_dir)


@hydra.main(config_path="pkg://toto_robot.configs", config_name="tokenize", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
