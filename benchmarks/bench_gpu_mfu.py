"""Model FLOPs utilisation of Toto pre-training on one GPU: bf16, FSDP2, activation checkpointing.

Runs the trainer's own step (``pretrain.trainer.optimizer_step``: bf16 autocast, gradient clipping,
AdamW) on a model wrapped by the trainer's ``distributed.wrap_model`` (FSDP2 ``fully_shard`` per
block, bf16 parameters, fp32 gradient reduction) in a process group of one, with every block
recomputed in the backward pass. For each size it times a few steps after warm-up and prints
tokens/s, achieved TFLOP/s from the analytic count (6 x parameters x tokens + attention,
``utils.flops.model_flops_per_token``) and MFU against ``--peak-tflops`` (989: H100 SXM dense bf16)
and against a bf16 matmul timed in the same process (``--matmul-size`` cubed). Needs only torch,
numpy, safetensors, tqdm and pyyaml; a JSON of every figure goes to ``--out``.

    PYTHONPATH=. python3 benchmarks/bench_gpu_mfu.py --out gpu_mfu.json          # toto_base and toto_large
    PYTHONPATH=. python3 benchmarks/bench_gpu_mfu.py --device cpu --sizes toto_tiny --seq 64 --batch 2 \
        --steps 2 --warmup 1 --matmul-size 256 --out /tmp/mfu.json                # the same path on a CPU
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from toto_robot.model.toto import Toto, TotoConfig  # noqa: E402
from toto_robot.pretrain import distributed as D  # noqa: E402
from toto_robot.pretrain.trainer import autocast_for, check_compiler, compile_blocks, optimizer_step  # noqa: E402
from toto_robot.utils.flops import model_flops_per_token  # noqa: E402
from toto_robot.utils.io import atomic_save_json  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp32": None}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_tflops(device: str, n: int, dtype: torch.dtype, repeats: int = 10) -> float:
    """Achieved TFLOP/s of an n x n x n matmul in ``dtype`` (the best of ``repeats`` timed after warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def bench_size(size: str, args, info) -> dict:
    device = args.device
    cfg = TotoConfig.from_name(size, block_size=max(args.seq + 1, 2))
    torch.manual_seed(0)
    with torch.device(device):
        model = Toto(cfg)
    model.checkpoint_blocks = not args.no_checkpointing
    if args.compile:
        compile_blocks(model)
    wrapped = D.wrap_model(model, "fsdp", info, device, param_dtype=DTYPES[args.dtype])
    opt = model.configure_optimizer(lr=3e-4, weight_decay=0.1)
    autocast = autocast_for(device) if args.dtype == "bf16" else torch.autocast("cpu", enabled=False)
    gen = torch.Generator(device=device).manual_seed(0)

    def batches():
        while True:
            ids = torch.randint(4, cfg.vocab_size, (args.batch, args.seq + 1), device=device, generator=gen)
            yield ids[:, :-1], ids[:, 1:]

    stream = batches()
    losses = []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        losses.append(optimizer_step(wrapped, model, opt, stream, 1, autocast, 1.0)[0])
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        losses.append(optimizer_step(wrapped, model, opt, stream, 1, autocast, 1.0)[0])
    sync(device)
    dt = (time.perf_counter() - t0) / args.steps
    tokens = args.batch * args.seq
    flops_per_token = model_flops_per_token(model, args.seq)
    achieved = flops_per_token * tokens / dt / 1e12
    out = {"size": size, "params": model.num_params(), "batch": args.batch, "seq": args.seq, "tokens_per_step": tokens,
           "step_s": dt, "tokens_per_s": tokens / dt, "flops_per_token": flops_per_token, "achieved_tflops": achieved,
           "mfu_vs_peak": achieved / args.peak_tflops, "losses": losses,
           "param_class": type(next(model.parameters())).__name__, "fsdp": type(model).__name__.startswith("FSDP"),
           "activation_checkpointing": model.checkpoint_blocks, "compiled": args.compile}
    if device.startswith("cuda"):
        out["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
    del wrapped, model, opt, stream
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["toto_base", "toto_large"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--seq", type=int, default=4096, help="positions per sequence (the paper's 16 frames x 256 tokens)")
    ap.add_argument("--steps", type=int, default=10, help="timed optimizer steps per size")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="the accelerator's dense peak for --dtype (989: H100 SXM bf16)")
    ap.add_argument("--matmul-size", type=int, default=8192, help="n of the n^3 matmul timed as the measured peak")
    ap.add_argument("--no-checkpointing", action="store_true", help="keep activations instead of recomputing each block")
    ap.add_argument("--compile", action="store_true", help="torch.compile each block (regional; adds compile time)")
    ap.add_argument("--out", required=True, help="JSON file for the results")
    args = ap.parse_args(argv)
    if args.compile:
        check_compiler(args.device, "--compile")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU; pass --device cpu to run the same path on the CPU")
    info = D.init_single_process(args.device)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    mm = matmul_tflops(args.device, args.matmul_size, DTYPES[args.dtype] or torch.float32)
    print(f"{name}, torch {torch.__version__}, {args.dtype}, FSDP2 world size {info.world_size}, "
          f"activation checkpointing {'off' if args.no_checkpointing else 'on'}{', compiled blocks' if args.compile else ''}")
    print(f"measured {args.dtype} matmul {args.matmul_size}^3: {mm:.1f} TFLOP/s; peak given: {args.peak_tflops:.0f} TFLOP/s")
    results = []
    for size in args.sizes:
        r = bench_size(size, args, info)
        r["mfu_vs_matmul"] = r["achieved_tflops"] / mm
        results.append(r)
        mem = f", {r['max_memory_allocated_gb']:.1f} GB max allocated" if "max_memory_allocated_gb" in r else ""
        print(f"{size} ({r['params'] / 1e6:.1f}M), {args.batch} x {args.seq} tokens/step: {r['tokens_per_s']:,.0f} tok/s, "
              f"{r['achieved_tflops']:.1f} TFLOP/s, MFU {100 * r['mfu_vs_peak']:.1f}% of peak, "
              f"{100 * r['mfu_vs_matmul']:.1f}% of the measured matmul{mem}")
    report = {"device": name, "torch": torch.__version__, "dtype": args.dtype, "world_size": info.world_size,
              "peak_tflops": args.peak_tflops, "matmul_size": args.matmul_size, "matmul_tflops": mm, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_save_json(report, args.out)
    torch.distributed.destroy_process_group()
    return report


if __name__ == "__main__":
    main()
