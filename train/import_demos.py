"""`toto-robot import-demos`: rosbag2 / LeRobot v3 / RLDS recordings -> the project's demo folder (hydra entry point).

    toto-robot import-demos format=rosbag2 src=bags/ out_dir=runs/demos/real format.read.episode_topic=/sim/episode_done
    toto-robot import-demos format=lerobot src=~/lerobot/my_dataset out_dir=runs/demos/lerobot
    toto-robot import-demos format=rlds src=~/tensorflow_datasets/bridge/1.0.0 out_dir=runs/demos/bridge
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.utils.config import ConfigError


def run(cfg: DictConfig) -> dict:
    fmt = cfg.format.name
    read = OmegaConf.to_container(cfg.format.read, resolve=True, throw_on_missing=True)
    common = {"src": str(cfg.src), "out_dir": str(cfg.out_dir), "task": cfg.task_name, "image_size": cfg.image_size, "skip_bad": bool(cfg.skip_bad)}
    if fmt == "rosbag2":
        from toto_robot.data.formats.rosbag2 import RosbagImportConfig, import_rosbag2

        return import_rosbag2(RosbagImportConfig(**common, **read))
    if fmt == "lerobot":
        from toto_robot.data.formats.lerobot import LeRobotImportConfig, import_lerobot

        return import_lerobot(LeRobotImportConfig(**common, **read))
    if fmt == "rlds":
        from toto_robot.data.formats.rlds import RLDSImportConfig, import_rlds

        return import_rlds(RLDSImportConfig(**common, **read))
    raise ConfigError(f"unknown format {fmt!r}: expected rosbag2, lerobot or rlds")


@hydra.main(config_path="pkg://toto_robot.configs", config_name="import_demos", version_base="1.3")
def main(cfg: DictConfig) -> None:
    summary = run(cfg)
    print(f"demonstrations: {cfg.out_dir} ({summary['episodes']} episodes, {summary['new_episodes']} new"
          f"{', ' + str(len(summary['failed'])) + ' inputs skipped' if summary['failed'] else ''})")


if __name__ == "__main__":
    main()
