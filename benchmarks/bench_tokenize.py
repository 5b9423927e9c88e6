"""Tokenizing at scale: encoder frames/s per device, code agreement under autocast, throughput against
the number of torchrun ranks, and tokens/s end to end from video files to shards.

Three parts, each printed beside a reference run in the same process:
  1. encode: frames/s of each tokenizer at each size on --device, in float32 (the reference; TF32 off
     on CUDA) and in the other shards.autocast settings (bf16 on CPU; tf32, bf16 and fp16 on CUDA) with
     the speed ratio and the fraction of codes identical to float32. Frames are moving shapes (not noise), encoded in batches of --batch. The
     weights are the configs' fresh initialisation unless --tokenizer-dirs names trained tokenizers
     (e.g. the official DALL-E dVAE converted by `toto-robot tokenize stage=train dalle_encoder=...`),
     whose agreement is the one that decides shards.autocast.
  2. ranks: `torchrun --nproc_per_node=N -m toto_robot.train.tokenize stage=shards` on one synthetic job
     (units of 16 synthetic videos) for each N of --ranks, shards.device=--device; tokens/s over the
     slowest rank's encoding time (the "tokenized ... in S s" line each rank logs; start-up and the
     merge are in wall_s) and the speed-up over the first N.
  3. end_to_end: mp4 files written to a temporary folder -> write_shards in this process with --workers
     decoding processes (shards.encode_batch 64, the default); tokens/s and frames/s beside the encoder
     alone timed here as the job runs it (64 frames a call; on CPU one thread in each of the workers).

    python benchmarks/bench_tokenize.py                       # dvae_8k, vq_16k, patch at 128 and 256 px (CPU: ~3 minutes)
    python benchmarks/bench_tokenize.py --device cuda --ranks 1 2 4 8 --tokenizer-dirs <dalle tokenizer> --out tokenize_h100.json
    python benchmarks/bench_tokenize.py --tiny                # CPU-sized: dvae_tiny, vq_512, patch at 32 and 64 px
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from common import timeit  # noqa: E402
from toto_robot.data.synthetic import moving_shapes  # noqa: E402
from toto_robot.data.tokenize import DatasetSpec, ShardJobConfig, autocast_context, encode_clips, write_shards  # noqa: E402
from toto_robot.tokenizers import build_tokenizer, load_tokenizer  # noqa: E402

CONFIGS = ROOT / "configs" / "tokenizer"
RANK_LINE = re.compile(r"tokenized (\d+) units(?: \(rank (\d+) of (\d+)\))? in ([\d.]+) s")


def build(name: str):
    spec = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    return build_tokenizer(spec["kind"], **spec.get("params", {})).eval()


def frames_for(n: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([moving_shapes(4, size, 3, rng)[0] for _ in range((n + 3) // 4)])[:n]


def encode_part(toks: dict, sizes: list[int], batch: int, device: str, repeats: int) -> list[dict]:
    rows = []
    dtypes = ["bf16"] if device == "cpu" else ["tf32", "bf16", "fp16"]
    print(f"encode: {batch} frames per call on {device} ({torch.get_num_threads()} threads); autocast beside float32 (codes identical, speed ratio)")
    for name, tok in toks.items():
        tok = tok.to(device)
        for size in sizes:
            frames = torch.from_numpy(frames_for(batch, size))
            sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

            def run(autocast="none"):
                with autocast_context(tok.device, autocast):
                    out = tok.encode(frames)
                sync()
                return out

            ref = run()
            t = timeit(run, repeat=repeats)
            row = {"tokenizer": tok.kind, "config": name, "size": size, "device": device, "batch": batch, "frames_per_s": batch / t}
            line = f"  {name:12s} {size:4d} px  float32 {batch / t:9.1f} frames/s"
            if tok.is_discrete:
                for dt in dtypes:
                    codes = run(dt)
                    t_dt = timeit(lambda: run(dt), repeat=repeats)
                    row[f"{dt}_frames_per_s"] = batch / t_dt
                    row[f"{dt}_speedup"] = t / t_dt
                    row[f"{dt}_code_agreement"] = float((codes == ref).float().mean())
                    line += f"  {dt} {batch / t_dt:9.1f} frames/s ({t / t_dt:.2f}x), codes identical {row[f'{dt}_code_agreement']:.2%}"
            print(line)
            rows.append(row)
    return rows


def _tokens(shards: Path) -> tuple[int, int, int]:
    index = json.loads((shards / "index.json").read_text())
    n = sum(s["num_sequences"] for s in index["shards"])
    return n, index["seq_len"], n * index["seq_len"]


def ranks_part(tok_dir: Path, ranks: list[int], size: int, units: int, frames: int, device: str, batch: int, workers: int, work: Path) -> list[dict]:
    rows = []
    print(f"ranks: torchrun -m toto_robot.train.tokenize, {units} units of 16 synthetic videos x 1 clip of {frames} frames at {size} px, "
          f"shards.device={device}")
    for n in ranks:
        out = work / f"ranks{n}"
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--standalone", "-m", "toto_robot.train.tokenize",
               "stage=shards", f"tokenizer_dir={tok_dir}", f"out_dir={out}", f"hydra.run.dir={out}/hydra", "data=synthetic",
               f"data.datasets=[{{name: syn, kind: synthetic, count: {16 * units}, clips_per_video: 1}}]", f"shards.resolution={size}",
               f"shards.num_frames={frames}", f"shards.device={device}", f"shards.workers={workers}", f"shards.encode_batch={batch}"]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
        wall = time.perf_counter() - t0
        if res.returncode:
            sys.exit(f"torchrun with {n} ranks failed:\n{res.stderr[-3000:]}")
        times = [float(m.group(4)) for m in RANK_LINE.finditer(res.stdout + res.stderr)]
        if len(times) != n:
            sys.exit(f"expected {n} 'tokenized ... in S s' lines, found {len(times)}:\n{(res.stdout + res.stderr)[-3000:]}")
        seqs, _, tokens = _tokens(out / "shards")
        row = {"ranks": n, "device": device, "sequences": seqs, "tokens": tokens, "encode_s": max(times), "wall_s": wall,
               "tokens_per_s": tokens / max(times)}
        row["speedup"] = row["tokens_per_s"] / rows[0]["tokens_per_s"] if rows else 1.0
        rows.append(row)
        print(f"  {n} rank(s): {tokens} tokens, slowest rank {max(times):.2f} s -> {row['tokens_per_s']:,.0f} tokens/s "
              f"({row['speedup']:.2f}x {ranks[0]} rank(s)); wall with start-up and merge {wall:.1f} s")
    return rows


def encoder_alone(tok_dir: Path, size: int, device: str, batch: int, repeats: int) -> float:
    """Frames/s of the job's encoder as the job runs it: one thread per worker on CPU, on the device otherwise."""
    tok = load_tokenizer(tok_dir).to(device)
    clips = list(frames_for(batch, size)[None])
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if device == "cpu" else threads)
    try:
        return batch / timeit(lambda: encode_clips(tok, clips, batch), repeat=repeats)
    finally:
        torch.set_num_threads(threads)


def end_to_end_part(tok_dir: Path, size: int, videos: int, device: str, batch: int, workers: int, work: Path, repeats: int) -> dict:
    from toto_robot.data.video import write_video

    ref = encoder_alone(tok_dir, size, device, batch, repeats)
    capacity = ref * (workers if device == "cpu" else 1)  # on CPU each worker encodes; otherwise this process does
    folder = work / "videos"
    for i in range(videos):
        write_video(folder / f"v{i}.mp4", moving_shapes(80, 2 * size, 3, np.random.default_rng(i))[0], fps=30)
    cfg = ShardJobConfig(tokenizer_dir=str(tok_dir), out_dir=str(work / "e2e"), resolution=size, num_frames=16, stride=4, workers=workers,
                         device=device, encode_batch=batch, datasets=[DatasetSpec("videos", "video", str(folder), clips_per_video=4)])
    t0 = time.perf_counter()
    write_shards(cfg)
    dt = time.perf_counter() - t0
    seqs, L, tokens = _tokens(work / "e2e")
    row = {"videos": videos, "size": size, "device": device, "workers": workers, "sequences": seqs, "seq_len": L, "tokens": tokens,
           "seconds": dt, "tokens_per_s": tokens / dt, "frames_per_s": seqs * 16 / dt}
    row["encoder_alone_frames_per_s"], row["of_encoder_alone"] = capacity, row["frames_per_s"] / capacity
    where = f"{workers} x {ref:.1f}" if device == "cpu" else f"{ref:.1f}"
    ratio = f", {row['of_encoder_alone']:.0%} of the encoder alone ({where} frames/s timed here, {batch} a call)"
    print(f"end to end: {videos} mp4 files of 80 frames at {2 * size} px -> {seqs} sequences of {L} ids at {size} px in {dt:.2f} s: "
          f"{row['tokens_per_s']:,.0f} tokens/s, {row['frames_per_s']:.1f} frames/s with {workers} decoding worker(s) on {device}{ratio}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="CPU-sized: dvae_tiny, vq_512, patch at 32 and 64 px; small jobs")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", nargs="*", default=None, help="tokenizer configs of part 1 (default dvae_8k vq_16k patch)")
    ap.add_argument("--tokenizer-dirs", nargs="*", default=[], help="trained tokenizer folders to time as well (part 1)")
    ap.add_argument("--sizes", nargs="+", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None, help="frames per encoder call of part 1 (default 2 on CPU, 64 on CUDA)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls after a warm-up (default 2 on CPU, 5 on CUDA)")
    ap.add_argument("--ranks", nargs="+", type=int, default=None, help="torchrun --nproc_per_node values of part 2")
    ap.add_argument("--job-tokenizer", default=None, help="tokenizer config of parts 2 and 3 (default dvae_8k on CUDA, dvae_tiny on CPU)")
    ap.add_argument("--job-size", type=int, default=None, help="resolution of parts 2 and 3 (default 128 on CUDA, 64 on CPU, 32 --tiny)")
    ap.add_argument("--job-videos", type=int, default=None, help="units of part 2 (16 synthetic videos each) and mp4 files of part 3")
    ap.add_argument("--workers", type=int, default=None, help="decoding processes per rank (shards.workers; default 2 on CPU, 8 on CUDA)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["encode", "ranks", "end_to_end"])
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    tiny = args.tiny
    names = args.only or (["dvae_tiny", "vq_512", "patch"] if tiny else ["dvae_8k", "vq_16k", "patch"])
    sizes = args.sizes or ([32, 64] if tiny else [128, 256])
    cpu = args.device == "cpu"
    batch = args.batch or (4 if tiny else 2 if cpu else 64)
    repeats = args.repeats or (2 if cpu else 5)
    ranks = args.ranks or ([1, 2] if cpu else list(range(1, torch.cuda.device_count() + 1)))
    # parts 2 and 3 at the paper's size on GPUs; on a CPU (dvae_8k: about 1 frame/s) a small tokenizer and size
    job_tok = args.job_tokenizer or ("dvae_tiny" if tiny or cpu else "dvae_8k")
    job_size = args.job_size or (32 if tiny else 64 if cpu else 128)
    job_videos = args.job_videos or (8 if tiny else 4 if cpu else 64)
    args.workers = args.workers or (2 if cpu else 8)
    torch.manual_seed(0)
    figures = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu", "torch": torch.__version__,
               "threads": torch.get_num_threads(), "encode": [], "ranks": [], "end_to_end": None}
    toks = {n: build(n) for n in names}
    toks.update({str(d): load_tokenizer(d) for d in args.tokenizer_dirs})
    if "encode" not in args.skip:
        figures["encode"] = encode_part(toks, sizes, batch, args.device, repeats)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        tok = build(job_tok)
        tok.save_pretrained(work / "tok")
        if "ranks" not in args.skip:
            figures["ranks"] = ranks_part(work / "tok", ranks, job_size, job_videos, 4 if tiny else 16, args.device, 64, args.workers, work)
        if "end_to_end" not in args.skip:
            figures["end_to_end"] = end_to_end_part(work / "tok", job_size, job_videos, args.device, 64, args.workers, work, repeats)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))
        print(f"figures: {args.out}")


if __name__ == "__main__":
    main()
