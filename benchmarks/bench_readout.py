"""The real-camera read-out at camera rate: where the time of one 640x480 frame goes, and what each lever buys.

The recipe (docs/real_frames.md) reads a Toto-tiny pre-trained at 128 px (16 x 16 patch tokens) at 256 px (32 x 32
tokens, one frame fills the 1025 positions), block 1 of 4, through four mirrored scans, average pool. The model here
has that shape, untrained: the same cost as the pre-trained one, no checkpoint needed (``--checkpoint`` times a real
run). Rows, batch 1, median of ``--repeat`` calls, ratios against the reference row in the same process:

* the four scans read one after another (the reference: the encoder as it runs, float32);
* the four scans as one batch of four sequences (a lever measured here, not adopted: no faster at batch 1);
* the encoder in bfloat16 (``precision=bfloat16``: the backbone's matmuls under autocast);
* one raster scan, float32 and bfloat16 (what the scans cost);
* and the parts of the float32 batched read: the centre crop + resize, the patch tokens, block 1's attention
  (q/k/v projections, RoPE, the causal attention kernel, the output projection) and its SwiGLU MLP.

    python benchmarks/bench_readout.py                 # 2 threads (the machine), then 1 (the node's default)
    python benchmarks/bench_readout.py --threads 2 --repeat 50
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import call_times  # noqa: E402

from toto_robot.encoders.base import resize_frames_u8  # noqa: E402
from toto_robot.encoders.toto import SCANS, TotoEncoder  # noqa: E402
from toto_robot.model.toto import TotoConfig  # noqa: E402


def recipe_encoder(checkpoint: str = "", precision: str = "float32", scan: str = "four") -> TotoEncoder:
    """The recipe's read-out: layer 1, 256 px, ``scan``, average pool; untrained unless ``checkpoint`` is given."""
    if checkpoint:
        from toto_robot.encoders import build_encoder

        return build_encoder("toto", checkpoint=checkpoint, layer=1, resolution=256, scan=scan, pooling="average", precision=precision)
    model = TotoConfig.from_name("toto_tiny").to_dict() | {"input_dim": 8 * 8 * 3, "block_size": 1025, "tokens_per_frame": 256}
    spec = {"model": model, "tokenizer": {"tokenizer": "patch", "patch_size": 8}, "resolution": 256, "start": "video", "scan": scan}
    torch.manual_seed(0)
    return TotoEncoder.from_spec("toto", spec, "average", layer=1).set_precision(precision)


def one_batch(enc: TotoEncoder, frames: torch.Tensor) -> torch.Tensor:
    """The four scans as one forward of a batch of four sequences, token grids flipped back and averaged."""
    u8 = resize_frames_u8(frames, enc.resolution)
    scans, g, B = SCANS[enc.scan], enc.token_grid, len(frames)
    h = enc._raster_tokens(torch.cat([u8.flip(f) if f else u8 for f in scans]), len(scans) * B, 1, [enc.layer])[enc.layer]
    h = h.reshape(len(scans), B, g, g, -1)
    out = sum(h[i].flip(f) if f else h[i] for i, f in enumerate(scans)) / len(scans)
    return enc.pool(out.reshape(B, g * g, -1))


def median_ms(fn, repeat: int) -> tuple[float, float]:
    times = call_times(fn, repeat, warmup=3)
    return 1000 * statistics.median(times), 1000 * float(np.percentile(times, 95))


def run(threads: int, repeat: int, checkpoint: str) -> None:
    torch.set_num_threads(threads)
    frame = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 480, 640, 3), dtype=np.uint8))
    four, four16 = recipe_encoder(checkpoint), recipe_encoder(checkpoint, "bfloat16")
    raster, raster16 = recipe_encoder(checkpoint, scan="raster"), recipe_encoder(checkpoint, "bfloat16", scan="raster")
    with torch.no_grad():
        exact = four(frame)
        assert torch.allclose(exact, one_batch(four, frame), atol=1e-5), "the batched scans differ from the encoder's"
        rel16 = float((four16(frame) - exact).norm() / exact.norm())
        rows = [("four scans, one after another (reference)", lambda: four(frame)),
                ("four scans as one batch of 4 sequences", lambda: one_batch(four, frame)),
                ("four scans, bfloat16", lambda: four16(frame)),
                ("raster scan only", lambda: raster(frame)),
                ("raster scan only, bfloat16", lambda: raster16(frame))]
        # the parts of the float32 read (the four views' tokens together)
        u8 = resize_frames_u8(frame, 256)
        views = torch.cat([u8.flip(f) if f else u8 for f in SCANS["four"]])  # (4, 256, 256, 3)
        codes = four.tokenizer.encode(views)
        body = codes.reshape(4, -1, codes.shape[-1]).float()
        idx = torch.cat([body, torch.zeros_like(body[:, :1])], dim=1)  # (4, 1025, 192)
        model, block = four.model, four.model.layers[0]
        x = model.embed(idx)
        L = x.shape[1]
        cos, sin = model.rope_cos[:L], model.rope_sin[:L]
        h = block.norm1(x)
        q = torch.randn(4, model.config.n_head, L, model.config.head_dim)
        parts = [("  crop + resize 640x480 -> 256", lambda: resize_frames_u8(frame, 256)),
                 ("  patch tokens of the 4 mirrored views", lambda: four.tokenizer.encode(torch.cat([u8.flip(f) if f else u8 for f in SCANS["four"]]))),
                 ("  block 1 attention (projections + RoPE + kernel)", lambda: block.attn(h, cos, sin)),
                 ("    of which the causal attention kernel", lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True)),
                 ("  block 1 SwiGLU MLP", lambda: block.mlp(block.norm2(x))),
                 ("  block 1 SwiGLU MLP, bfloat16", lambda: _autocast_mlp(block, x))]
        print(f"\n{threads} thread(s): Toto-tiny read-out at 256 px, layer 1, average pool, one 640x480 frame "
              f"({'checkpoint ' + checkpoint if checkpoint else 'untrained, the recipe shape'})")
        print(f"{'':52s} {'median ms':>9s} {'p95 ms':>8s} {'frames/s':>9s} {'vs ref':>7s}")
        ref = None
        for name, fn in rows + parts:
            med, p95 = median_ms(fn, repeat)
            ref = ref or med
            print(f"{name:52s} {med:9.2f} {p95:8.2f} {1000 / med:9.1f} {ref / med:6.2f}x")
        print(f"bfloat16 features vs float32: relative difference {rel16:.2e} (norm of the difference / norm)")


def _autocast_mlp(block, x):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return block.mlp(block.norm2(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="*", default=[2, 1])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--checkpoint", default="", help="a pre-training final/ dir of the recipe's shape (default: untrained)")
    args = ap.parse_args()
    import os

    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}")
    for t in args.threads:
        run(t, args.repeat, args.checkpoint)


if __name__ == "__main__":
    main()
