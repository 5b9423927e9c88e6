"""Probing frozen encoders: labelled sets, attention/average probes, layer sweeps, real-frame scores."""
from toto_robot.probes.datasets import ProbeData, build_probe_data, image_folder_data, shapes_motion_data, sim_probe_data
from toto_robot.probes.davis import DavisFormatError, davis_videos
from toto_robot.probes.label_propagation import copy_first_j, propagation_j
from toto_robot.probes.probe import Probe, ProbeResult, train_probe
from toto_robot.probes.real_suite import real_frame_scores
from toto_robot.probes.regression import group_folds, regression_sweep, ridge_cv
from toto_robot.probes.robot_frames import SIM_EE_POS, FrameTargets, robot_frames
from toto_robot.probes.sweep import best_row, layer_sweep

__all__ = ["ProbeData", "build_probe_data", "image_folder_data", "propagation_j", "shapes_motion_data", "sim_probe_data", "Probe", "ProbeResult", "train_probe",
           "best_row", "layer_sweep", "DavisFormatError", "davis_videos", "copy_first_j", "real_frame_scores",
           "group_folds", "regression_sweep", "ridge_cv", "SIM_EE_POS", "FrameTargets", "robot_frames"]
