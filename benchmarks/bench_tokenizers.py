"""Tokenizer throughput on CPU at 128 px (16 x 16 tokens): encode and decode frames/s for each
tokenizer config, as a ratio to the paper's dVAE-8k in the same process.
    python benchmarks/bench_tokenizers.py [--batch 8] [--size 128]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from common import timeit  # noqa: E402

from toto_robot.tokenizers import build_tokenizer  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tokenizer"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    frames = np.random.default_rng(0).integers(0, 256, (args.batch, args.size, args.size, 3), dtype=np.uint8)
    names = ["dvae_8k"] + sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem != "dvae_8k")
    ref = None
    print(f"{args.batch} frames of {args.size}x{args.size}, {torch.get_num_threads()} threads")
    print(f"{'tokenizer':12s} {'encode f/s':>11s} {'decode f/s':>11s} {'enc vs dvae_8k':>15s}")
    for name in names:
        spec = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        tok = build_tokenizer(spec["kind"], **spec.get("params", {})).eval()
        with torch.no_grad():
            codes = tok.encode(frames)
            t_enc = timeit(lambda: tok.encode(frames), repeat=3)
            t_dec = timeit(lambda: tok.decode(codes), repeat=3)
        ref = ref or t_enc
        print(f"{name:12s} {args.batch / t_enc:11.1f} {args.batch / t_dec:11.1f} {ref / t_enc:14.2f}x")


if __name__ == "__main__":
    main()
