"""`toto-robot export-demos`: the project's demo folder -> rosbag2 / LeRobot v3 / RLDS (hydra entry point).

    toto-robot export-demos format=lerobot demos=runs/demos/franka_pick out_dir=runs/lerobot/franka_pick
    toto-robot export-demos format=rosbag2 demos=runs/demos/franka_pick out_dir=runs/bags/franka_pick
    toto-robot export-demos format=rlds demos=runs/demos/franka_pick out_dir=runs/rlds/franka_pick
"""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.utils.config import ConfigError


def run(cfg: DictConfig) -> Path:
    fmt = cfg.format.name
    write = OmegaConf.to_container(cfg.format.write, resolve=True, throw_on_missing=True)
    if fmt == "rosbag2":
        from toto_robot.data.formats.rosbag2 import export_rosbag2

        return export_rosbag2(str(cfg.demos), str(cfg.out_dir), **write)
    if fmt == "lerobot":
        from toto_robot.data.formats.lerobot import export_lerobot

        return export_lerobot(str(cfg.demos), str(cfg.out_dir), **write)
    if fmt == "rlds":
        from toto_robot.data.formats.rlds import export_rlds

        return export_rlds(str(cfg.demos), str(cfg.out_dir), **write)
    raise ConfigError(f"unknown format {fmt!r}: expected rosbag2, lerobot or rlds")


@hydra.main(config_path="pkg://toto_robot.configs", config_name="export_demos", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(f"exported: {run(cfg)}")


if __name__ == "__main__":
    main()
