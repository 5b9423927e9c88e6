"""`toto-robot pretrain`: next-token pre-training of Toto on token shards (hydra entry point).

Single process:  toto-robot pretrain shards=runs/tokenize/.../shards model=toto_tiny
torchrun:        torchrun --nproc_per_node=2 -m toto_robot.train.pretrain shards=... trainer.parallel=fsdp
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.pretrain.trainer import PretrainConfig, pretrain


def to_config(cfg: DictConfig) -> PretrainConfig:
    t = OmegaConf.to_container(cfg.trainer, resolve=True, throw_on_missing=True)
    return PretrainConfig(shards=cfg.shards, out_dir=str(cfg.out_dir), model=cfg.model.name,
                          model_overrides=OmegaConf.to_container(cfg.model.overrides, resolve=True, throw_on_missing=True), init_from=cfg.init_from,
                          resume=cfg.resume, mixture=OmegaConf.to_container(cfg.mixture, resolve=True, throw_on_missing=True), **t)


@hydra.main(config_path="pkg://toto_robot.configs", config_name="pretrain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out = pretrain(to_config(cfg))
    print(f"pre-training run: {out}")


if __name__ == "__main__":
    main()
