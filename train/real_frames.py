"""`toto-robot real-frames`: frozen encoders on the user's real video and robot episodes (hydra entry point).

    toto-robot real-frames toto=runs/pretrain/<run>/final davis_root=~/data/DAVIS robot_roots=[~/lerobot/g1]

See configs/real_frames.yaml for every option and toto_robot/probes/real_suite.py for the protocol.
"""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.probes.real_suite import RealFramesConfig, run_real_frames, standard_encoders
from toto_robot.utils.io import atomic_write


@hydra.main(config_path="pkg://toto_robot.configs", config_name="real_frames", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "config.yaml", "w") as f:
        f.write(OmegaConf.to_yaml(cfg, resolve=True))
    c = OmegaConf.to_container(cfg, resolve=True)
    encoders = {**standard_encoders(c.pop("toto"), c.pop("mae"), c.pop("toto_layer"), c.pop("mae_layer"), c.pop("resolution"),
                                    c.pop("toto_scan")), **c.pop("encoders")}
    page = run_real_frames(RealFramesConfig(encoders=encoders, **{k: v for k, v in c.items() if k != "hydra"}))
    print(page.read_text())
    print(f"real-frame report: {page}")


if __name__ == "__main__":
    main()
