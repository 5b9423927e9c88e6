"""`toto-robot collect`: scripted-expert demonstrations and videos from the MuJoCo suite (hydra entry point).

    toto-robot collect task=kuka_cabinet collect.episodes=100 out_dir=runs/demos/kuka_cabinet
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.sim_envs.collect import CollectConfig, collect


def to_config(cfg: DictConfig) -> CollectConfig:
    c = OmegaConf.to_container(cfg.collect, resolve=True, throw_on_missing=True)
    return CollectConfig(task=cfg.task.name, image_size=cfg.task.image_size, camera=cfg.task.camera, out_dir=str(cfg.out_dir), **c)


@hydra.main(config_path="pkg://toto_robot.configs", config_name="collect", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out = collect(to_config(cfg))
    print(f"demonstrations: {out}")


if __name__ == "__main__":
    main()
