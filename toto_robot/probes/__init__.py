"""Probing frozen encoders: labelled sets, attention/average probes, layer sweeps."""
from toto_robot.probes.datasets import ProbeData, build_probe_data, image_folder_data, shapes_motion_data, sim_probe_data
from toto_robot.probes.label_propagation import propagation_j
from toto_robot.probes.probe import Probe, ProbeResult, train_probe
from toto_robot.probes.sweep import best_row, extract_tokens, layer_sweep

__all__ = ["ProbeData", "build_probe_data", "image_folder_data", "propagation_j", "shapes_motion_data", "sim_probe_data", "Probe", "ProbeResult", "train_probe",
           "best_row", "extract_tokens", "layer_sweep"]
