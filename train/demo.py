"""`toto-robot demo`: videos -> tokenizer -> shards -> Toto pre-training -> probes -> BC comparison -> report.

    toto-robot demo                # full CPU-sized run (cached stages are reused)
    toto-robot demo fast=true      # smoke-test sizes
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.demo.pipeline import DemoConfig, run_demo


@hydra.main(config_path="pkg://toto_robot.configs", config_name="demo", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    c.pop("hydra", None)
    report = run_demo(DemoConfig(**c))
    print(f"\nreport: {report}\n        {report.with_suffix('.md')}")


if __name__ == "__main__":
    main()
