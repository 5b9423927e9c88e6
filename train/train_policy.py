"""`toto-robot train-policy`: behaviour cloning or PPO on a frozen encoder (hydra entry point).

    toto-robot train-policy policy=bc demos=runs/demos/franka_cabinet encoder=toto encoder.checkpoint=<run>/final
    toto-robot train-policy policy=ppo task=franka_cabinet encoder=random policy.total_timesteps=50000
"""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.utils.config import ConfigError
from toto_robot.utils.io import atomic_write


def run(cfg: DictConfig) -> Path:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "config.yaml", "w") as f:
        f.write(OmegaConf.to_yaml(cfg, resolve=True))
    p = {k: v for k, v in OmegaConf.to_container(cfg.policy, resolve=True, throw_on_missing=True).items() if k != "kind"}
    if cfg.policy.kind == "bc":
        from toto_robot.policies.bc import BCConfig
        from toto_robot.policies.dagger import train_policy_bc

        if not cfg.demos:
            raise ConfigError("policy=bc needs demos=<demonstration folder> (toto-robot collect, or the ROS demo recorder)")
        demos = OmegaConf.to_container(cfg.demos) if OmegaConf.is_list(cfg.demos) else str(cfg.demos)  # one folder or a list
        return train_policy_bc(BCConfig(demos=demos, out_dir=str(out), encoder=OmegaConf.to_container(cfg.encoder, resolve=True, throw_on_missing=True), seed=cfg.seed, device=cfg.device, **p))
    if cfg.policy.kind == "ppo":
        from toto_robot.policies.ppo import PPOConfig, train_ppo

        p["net_arch"] = tuple(p["net_arch"])
        return train_ppo(PPOConfig(task=cfg.task.name, image_size=cfg.task.image_size, camera=cfg.task.camera, out_dir=str(out), encoder=OmegaConf.to_container(cfg.encoder, resolve=True, throw_on_missing=True),
                                   seed=cfg.seed, device=cfg.device, **p))
    raise ConfigError(f"unknown policy kind {cfg.policy.kind!r}: expected bc or ppo")


@hydra.main(config_path="pkg://toto_robot.configs", config_name="train_policy", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(f"policy: {run(cfg)}")


if __name__ == "__main__":
    main()
