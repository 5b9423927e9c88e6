"""`toto-robot compare`: several frozen encoders, same tasks/seeds/budget; table + plots (hydra entry point)."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.policies.compare import CompareConfig, compare


@hydra.main(config_path="pkg://toto_robot.configs", config_name="compare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    out = compare(CompareConfig(tasks=c["tasks"], encoders=c["encoders"], demos=c["demos"], out_dir=str(cfg.out_dir), seeds=c["seeds"],
                                eval_episodes=c["eval_episodes"], bc=c["bc"], demo_counts=c["demo_counts"],
                                eval_randomization=c.get("eval_randomization") or {}))
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    main()
