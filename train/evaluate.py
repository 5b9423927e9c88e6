"""`toto-robot evaluate`: success rate (Wilson 95% interval) of a saved policy in a MuJoCo task.

    toto-robot evaluate policy_dir=runs/policy/bc/franka_cabinet/toto/<time>/policy episodes=50
    toto-robot evaluate policy_dir=<policy> randomization.lighting=true randomization.colors=true randomization.camera_jitter=0.01
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.policies import evaluate_policy, load_policy
from toto_robot.sim_envs.arena import Randomization
from toto_robot.utils.config import ConfigError
from toto_robot.utils.io import atomic_save_json


@hydra.main(config_path="pkg://toto_robot.configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    policy = load_policy(cfg.policy_dir)
    task = cfg.task or policy.meta.get("task")
    if not task:
        raise ConfigError(f"{cfg.policy_dir} does not record its task; pass task=<franka_pick|franka_cabinet|kuka_pick|kuka_cabinet>")
    out = Path(cfg.out_dir)
    randomization = OmegaConf.to_container(cfg.randomization) if cfg.get("randomization") is not None else {}
    Randomization.from_config(randomization)  # a bad key or value fails here, before any rollout
    result = evaluate_policy(policy, task, cfg.episodes, seed=cfg.seed, video_path=out / "rollouts.mp4" if cfg.video else None,
                             randomization=randomization)
    atomic_save_json({**result, "randomization": randomization}, out / "eval.json")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
