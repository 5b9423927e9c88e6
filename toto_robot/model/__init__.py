"""The Toto decoder (LLaMA-style), its GPT-2 variant, and Hugging Face interop."""
from toto_robot.model.toto import CONFIGS, KVCache, Toto, TotoConfig, TotoOutput

__all__ = ["CONFIGS", "KVCache", "Toto", "TotoConfig", "TotoOutput"]
