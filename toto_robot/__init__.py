"""toto_robot: autoregressive video pre-training (Toto) as a frozen visual encoder for robots."""

__version__ = "0.1.0"
