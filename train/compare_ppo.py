"""`toto-robot compare-ppo`: PPO learning curves of several frozen encoders, same tasks/seeds/env steps (hydra entry point)."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.policies.compare_ppo import PPOCompareConfig, compare_ppo


@hydra.main(config_path="pkg://toto_robot.configs", config_name="compare_ppo", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    ppo = {**c["ppo"], "net_arch": tuple(c["ppo"]["net_arch"])}
    out = compare_ppo(PPOCompareConfig(tasks=c["tasks"], encoders=c["encoders"], out_dir=str(cfg.out_dir), seeds=c["seeds"], ppo=ppo,
                                       thresholds=c["thresholds"], window=c["window"], workers=c["workers"]))
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    main()
