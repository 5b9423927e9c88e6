"""Frozen-encoder latency per camera frame (what bounds the ROS node's rate), against the
untrained ViT baseline in the same process.
    python benchmarks/bench_encoders.py [--checkpoint runs/demo-cache/pretrain-*/run/final]
"""
from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import timeit  # noqa: E402

from toto_robot.encoders import build_encoder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=next(iter(sorted(glob.glob("runs/demo-cache/pretrain-*/run/final"))), ""))
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    frames = np.random.default_rng(0).integers(0, 256, (args.batch, 64, 64, 3), dtype=np.uint8)
    encoders = {"mae_tiny (reference)": build_encoder("mae_tiny")}
    if args.checkpoint:
        encoders["toto (half depth)"] = build_encoder("toto", checkpoint=args.checkpoint)
    else:
        print("no Toto checkpoint found (run `make demo` or pass --checkpoint); timing the ViT only")
    ref = None
    with torch.no_grad():
        for name, enc in encoders.items():
            t = timeit(lambda: enc(frames), repeat=20, warmup=3)
            ref = ref or t
            print(f"{name:22s} {1000 * t / args.batch:7.2f} ms/frame  {args.batch / t:7.1f} frames/s  {t / ref:.2f}x reference")


if __name__ == "__main__":
    main()
