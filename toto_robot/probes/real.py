"""Score one frozen encoder on real frames the user has on disk, each number with its baseline beside it:

* label propagation J on DAVIS-layout clips (``davis.py``), beside the J of copying the first mask;
* ridge R^2 of a continuous target (end-effector xyz) from robot camera frames (``robot_frames.py``,
  ``regression.py``), beside the R^2 of raw 8 x 8 x 3 pixels.

    davis = davis_videos("~/data/DAVIS", max_sequences=10, max_frames=8)   # read once,
    robot = robot_frames("~/data/robot_npz", target_key="ee_pos", target=None)
    for enc in encoders:                                                     # score many
        print(real_frame_scores(enc, davis=davis, robot=robot))

Folders are read when given as paths (``davis_root``/``robot_root``); pass the loaded ``davis``/``robot``
data instead to score several encoders without reading the files again.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from toto_robot.encoders.base import Encoder
from toto_robot.encoders.features import pooled_features
from toto_robot.probes.davis import davis_videos
from toto_robot.probes.label_propagation import copy_first_j, propagation_j
from toto_robot.probes.regression import raw_pixels_r2, ridge_cv
from toto_robot.probes.robot_frames import FrameTargets, robot_frames


def real_frame_scores(encoder: Encoder, davis_root: str | Path | None = None, robot_root: str | Path | None = None, *,
                      davis: list[tuple[np.ndarray, np.ndarray]] | None = None, robot: FrameTargets | None = None,
                      layer: int | None = None, poolings=("average", "spatial2"), folds: int = 5,
                      davis_kwargs: dict | None = None, robot_kwargs: dict | None = None) -> dict:
    """Scores of ``encoder`` at ``layer`` (default: ``encoder.layer``) on whichever real sets are given.

    ``davis_kwargs`` go to ``davis_videos`` (max_sequences, max_frames, stride, size, res, split), ``robot_kwargs``
    to ``robot_frames`` (target, target_key, image_key, max_episodes, stride, max_frames, size).

    Returns ``{"encoder", "layer"}`` plus, with DAVIS clips, ``davis_J``/``davis_F`` and ``davis_copy_first_J``/``_F``; with robot
    frames, ``robot_r2_<pooling>`` for each pooling and ``robot_raw_pixels_r2``.
    """
    if davis_root is not None and davis is None:
        davis = davis_videos(davis_root, **(davis_kwargs or {}))
    if robot_root is not None and robot is None:
        robot = robot_frames(robot_root, **(robot_kwargs or {}))
    if davis is None and robot is None:
        raise ValueError("real_frame_scores needs DAVIS clips (davis_root or davis) and/or robot frames (robot_root or robot)")
    layer = encoder.layer if layer is None else int(layer)
    scores: dict = {"encoder": encoder.name, "layer": layer}
    if davis is not None:
        ours, floor = propagation_j(encoder, davis, layer), copy_first_j(davis)
        scores |= {"davis_J": ours["J"], "davis_F": ours["F"], "davis_copy_first_J": floor["J"], "davis_copy_first_F": floor["F"]}
    if robot is not None:
        feats = pooled_features(encoder, robot.frames, [layer], poolings)
        for p in poolings:
            scores[f"robot_r2_{p}"] = ridge_cv(feats[(layer, p)], robot.targets, robot.groups, folds)["r2"]
        scores["robot_raw_pixels_r2"] = raw_pixels_r2(robot, folds)
    return scores
