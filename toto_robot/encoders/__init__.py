"""Frozen visual encoders behind one interface: Toto, MAE/MVP ViTs and a random-init control."""
from toto_robot.encoders.base import AttentionPool, AveragePool, Encoder, FrameFormatError
from toto_robot.encoders.registry import ENCODER_NAMES, build_encoder, encoder_from_spec, load_encoder
from toto_robot.encoders.toto import TotoEncoder
from toto_robot.encoders.vit import ViTEncoder, build_vit_encoder, load_vit_state_dict

__all__ = ["Encoder", "AttentionPool", "AveragePool", "FrameFormatError", "ENCODER_NAMES", "build_encoder", "encoder_from_spec", "load_encoder",
           "TotoEncoder", "ViTEncoder", "build_vit_encoder", "load_vit_state_dict"]
