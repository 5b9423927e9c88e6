"""Visual tokenizers behind one interface (see ``base.Tokenizer``): dVAE, VQ, continuous patches."""
from __future__ import annotations

from pathlib import Path

from toto_robot.errors import UnknownNameError
from toto_robot.tokenizers.base import Tokenizer, TokenizerInputError
from toto_robot.tokenizers.dvae import DVAETokenizer, load_dalle_weights
from toto_robot.tokenizers.patch import PatchTokenizer
from toto_robot.tokenizers.vq import VQTokenizer
from toto_robot.utils.io import CheckpointError, load_pretrained

TOKENIZERS = {"dvae": DVAETokenizer, "vq": VQTokenizer, "patch": PatchTokenizer}


def build_tokenizer(kind: str, **kwargs) -> Tokenizer:
    if kind not in TOKENIZERS:
        raise UnknownNameError(f"unknown tokenizer {kind!r}; known: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[kind](**kwargs)


def load_tokenizer(directory: str | Path, map_location: str = "cpu") -> Tokenizer:
    sd, cfg = load_pretrained(directory, map_location)
    cfg = dict(cfg)
    kind = cfg.pop("tokenizer", None)
    if kind not in TOKENIZERS:
        raise CheckpointError(f"{directory}: config.json names no known tokenizer (got {kind!r})")
    tok = build_tokenizer(kind, **cfg)
    tok.load_weights(sd, source=str(directory))
    return tok.eval()


__all__ = ["Tokenizer", "TokenizerInputError", "DVAETokenizer", "VQTokenizer", "PatchTokenizer", "build_tokenizer",
           "load_tokenizer", "load_dalle_weights", "TOKENIZERS"]
