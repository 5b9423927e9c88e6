"""`toto-robot ood`: out-of-distribution scores of recorded frames against the reference saved with a policy.

    toto-robot ood policy_dir=runs/policy/bc/franka_cabinet/toto/<time>/policy frames=runs/demos/cabinet
    toto-robot ood policy_dir=... frames=$HOME/videos/new_kitchen stride=3     # a folder of videos, or of images
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig

from toto_robot.policies import load_policy
from toto_robot.policies.ood import OODReferenceError, load_reference
from toto_robot.policies.ood_report import score_recordings
from toto_robot.utils.config import check_int


@hydra.main(config_path="pkg://toto_robot.configs", config_name="ood", version_base="1.3")
def main(cfg: DictConfig) -> None:
    stride = check_int(cfg.stride, "stride", low=1)
    max_frames = None if cfg.max_frames is None else check_int(cfg.max_frames, "max_frames", low=1)
    policy = load_policy(cfg.policy_dir)  # a folder that is not a policy is named as such before its reference is looked for
    ref = load_reference(cfg.policy_dir)
    if ref is None:
        raise OODReferenceError(f"{cfg.policy_dir} has no OOD reference (ood.safetensors): it was trained before the monitor, or with "
                                "policy.ood=false; train it again to score frames")
    summary = score_recordings(policy, ref, cfg.frames, Path(cfg.out_dir), stride, max_frames)
    print(json.dumps({r["recording"]: {k: round(v, 4) for k, v in r.items() if k not in ("recording", "frames")} for r in summary["recordings"]},
                     indent=1))
    print(f"scores: {Path(cfg.out_dir) / 'scores.csv'}  plot: {Path(cfg.out_dir) / 'ood_scores.png'}")


if __name__ == "__main__":
    main()
