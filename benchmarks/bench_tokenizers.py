"""Tokenizer throughput on CPU at 128 px (16 x 16 tokens): encode and decode frames/s for each
tokenizer config, and how close encoding comes to the machine's matmul rate.

For each tokenizer the encoder's FLOPs per frame are counted (PyTorch's FlopCounterMode), and the
achieved GFLOP/s of ``encode`` is printed beside a float32 matmul timed in the same process (the
machine's practical peak), as a fraction. ``--variants`` times the encoder's settings against each
other alternately (the tokenizer's default; without channels_last; under no_grad instead of
inference_mode) at each ``--batches`` size.
    python benchmarks/bench_tokenizers.py [--batch 8] [--size 128] [--only dvae_8k vq_16k] [--variants --batches 1 8]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
from common import timeit  # noqa: E402
from toto_robot.tokenizers import build_tokenizer  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tokenizer"


def matmul_gflops(n: int = 1024, repeat: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / timeit(lambda: a @ b, repeat=repeat) / 1e9


def encode_flops(tok, frames) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    mode = FlopCounterMode(display=False)
    with mode:
        tok.encode(frames)
    return int(mode.get_total_flops())


def load(name: str):
    spec = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    return build_tokenizer(spec["kind"], **spec.get("params", {})).eval()


def variants(name: str, frames_by_batch: dict[int, np.ndarray], repeats: int) -> None:
    """Encode frames/s under each setting, run alternately so load from other jobs hits all alike."""
    tok = load(name)
    if not hasattr(tok, "encode_settings"):
        return
    settings = {"default": {}, "no channels_last": {"channels_last": False}, "no_grad": {"inference_mode": False}}
    for batch, frames in frames_by_batch.items():
        times = {k: [] for k in settings}
        for r in range(repeats + 1):
            for k, kw in settings.items():
                with tok.encode_settings(**kw):
                    t0 = time.perf_counter()
                    tok.encode(frames)
                    if r:
                        times[k].append(time.perf_counter() - t0)
        base = statistics.median(times["default"])
        row = "  ".join(f"{k} {batch / statistics.median(v):6.2f} f/s ({statistics.median(v) / base:.2f}x time)" for k, v in times.items())
        print(f"  {name} batch {batch}: {row}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--only", nargs="*", default=None, help="tokenizer configs to time (default: all)")
    ap.add_argument("--variants", action="store_true", help="also time channels_last / inference_mode off, alternately")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (args.batch, args.size, args.size, 3), dtype=np.uint8)
    names = args.only or (["dvae_8k"] + sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem != "dvae_8k"))
    peak = matmul_gflops()
    print(f"{args.batch} frames of {args.size}x{args.size}, {torch.get_num_threads()} threads; float32 1024^3 matmul: {peak:.0f} GFLOP/s")
    print(f"{'tokenizer':12s} {'encode f/s':>11s} {'decode f/s':>11s} {'GFLOP/frame':>12s} {'enc GFLOP/s':>12s} {'of matmul':>10s}")
    for name in names:
        tok = load(name)
        codes = tok.encode(frames)
        t_enc = timeit(lambda: tok.encode(frames), repeat=args.repeats)
        t_dec = timeit(lambda: tok.decode(codes), repeat=args.repeats)
        flops = encode_flops(tok, frames) / args.batch
        rate = flops * args.batch / t_enc / 1e9
        print(f"{name:12s} {args.batch / t_enc:11.1f} {args.batch / t_dec:11.1f} {flops / 1e9:12.2f} {rate:12.1f} {rate / peak:9.0%}")
    if args.variants:
        print("encode settings, alternating (time relative to the default):")
        for name in names:
            variants(name, {b: rng.integers(0, 256, (b, args.size, args.size, 3), dtype=np.uint8) for b in args.batches}, args.repeats)


if __name__ == "__main__":
    main()
