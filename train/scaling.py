"""`toto-robot scaling`: a sweep of small Totos and the power-law fit L(C) = a * C^b (hydra entry point)."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.pretrain.scaling import ScalingConfig, scaling_sweep


@hydra.main(config_path="pkg://toto_robot.configs", config_name="scaling", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    c.pop("hydra", None)
    c["out_dir"] = str(cfg.out_dir)
    fit = scaling_sweep(ScalingConfig(**c))
    for r in fit["runs"]:
        print(f"width {r['width']:5d}  N {r['params']:>10,d}  C {r['compute']:.3e}  loss {r['eval_loss']:.4f}")
    print(f"L(C) = {fit['a']:.4g} * C^{fit['b']:.4f}   ({cfg.out_dir}/scaling.png)")


if __name__ == "__main__":
    main()
