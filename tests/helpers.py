"""Small builders shared by tests: a tiny pre-trained-run folder (untrained weights, real layout)."""
from __future__ import annotations

from pathlib import Path

import torch

from toto_robot.model.toto import Toto, TotoConfig
from toto_robot.tokenizers import build_tokenizer
from toto_robot.utils.io import atomic_save_json


def tiny_toto_run(root: Path, resolution: int = 32, n_layer: int = 4, vocab: int = 64, seed: int = 0, tokenizer: str = "vq") -> Path:
    """``root/final`` laid out like a pre-training run's output: model + tokenizer/ + data.json (``tokenizer``:
    an untrained ``vq`` of ``vocab`` codes, or continuous 8 px ``patch`` tokens)."""
    torch.manual_seed(seed)
    if tokenizer == "patch":
        tok = build_tokenizer("patch", patch_size=8)
    else:
        tok = build_tokenizer("vq", vocab_size=vocab, width=16, code_dim=8, downsample=8)
    hw = (resolution // 8) ** 2
    cfg = TotoConfig(n_layer=n_layer, n_head=2, n_embd=32, mlp_hidden=64, block_size=4 * hw + 1, vocab_size=vocab + 4,
                     tokens_per_frame=hw, name="toto_test", input_dim=tok.token_dim if tokenizer == "patch" else 0)
    final = root / "final"
    Toto(cfg).save_pretrained(final)
    tok.save_pretrained(final / "tokenizer")
    atomic_save_json({"tokenizer": {"name": tokenizer, "resolution": resolution, "tokens_per_frame": hw, "num_frames": 4}}, final / "data.json")
    return final


def quiet_for(items: list, seconds: float):
    """A condition for ``spin_until``: true once ``items`` has not grown for ``seconds`` (messages still on the
    wire arrive first, then none)."""
    import time

    seen = {"n": len(items), "t": time.monotonic()}

    def check() -> bool:
        if len(items) != seen["n"]:
            seen["n"], seen["t"] = len(items), time.monotonic()
        return time.monotonic() - seen["t"] >= seconds
    return check
