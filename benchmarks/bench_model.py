"""Toto decoder throughput against Hugging Face's LlamaForCausalLM on the same weights (same process).

Prints tokens/s for forward and forward+backward, the ratio ours / HF, and how much the
probe-only path (``features`` stops at the requested layer) saves over a full forward.
    python benchmarks/bench_model.py [--size toto_tiny] [--batch 4]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import timeit  # noqa: E402

from toto_robot.model.hf import export_hf  # noqa: E402
from toto_robot.model.toto import Toto, TotoConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="toto_tiny")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=513)
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = TotoConfig.from_name(args.size)
    ours = Toto(cfg).eval()
    hf = export_hf(ours)
    idx = torch.randint(4, cfg.vocab_size, (args.batch, min(args.seq, cfg.block_size)))
    n = idx.numel()
    with torch.no_grad():
        t_ours = timeit(lambda: ours(idx))
        t_hf = timeit(lambda: hf(input_ids=idx))
        t_feat = timeit(lambda: ours.features(idx, [cfg.n_layer // 2]))

    def train_step(model, hf_api: bool):
        out = model(input_ids=idx, labels=idx) if hf_api else model(idx[:, :-1], idx[:, 1:])
        out.loss.backward()

    ours.train(), hf.train()
    tb_ours = timeit(lambda: train_step(ours, False), repeat=3)
    tb_hf = timeit(lambda: train_step(hf, True), repeat=3)
    print(f"{args.size}: {ours.num_params() / 1e6:.2f}M params, batch {args.batch} x {idx.shape[1]} tokens, {torch.get_num_threads()} threads")
    print(f"  forward          ours {n / t_ours:10.0f} tok/s   HF {n / t_hf:10.0f} tok/s   ratio {t_hf / t_ours:.2f}x")
    print(f"  forward+backward ours {n / tb_ours:10.0f} tok/s   HF {n / tb_hf:10.0f} tok/s   ratio {tb_hf / tb_ours:.2f}x")
    print(f"  features(layer {cfg.n_layer // 2}) vs full forward: {t_ours / t_feat:.2f}x faster")


if __name__ == "__main__":
    main()
