"""Toto decoder throughput against Hugging Face's LlamaForCausalLM on the same weights (same process).

The two models run alternately (ours, HF, ours, HF, ...), so load from other jobs on a shared machine
hits both alike; each round gives one ratio HF time / our time, and the script prints the median
ratio with its spread (min-max over rounds), median tokens/s of each, and memory: the bytes autograd
saves for the backward pass (exact, per model) and the peak resident memory above the step's start
(sampled; CUDA: max allocated). Both models see the same tokens and compute the same number of positions.

It also prints the bound on the train-step ratio: the time our step spends in matrix products
(mm/bmm and the attention kernels, from torch's profiler) is work HF's step does too, at the same
FLOPs, so HF time / that time is the most any speed-up outside them could reach; beside it, the rate
of our linear layers' matmuls against a 1024^3 matmul timed in the same process. With
``--attention`` our step also runs with torch's attention kernel instead of the blocked one
(``Attention.blocked = False``) in the same alternation.
    python benchmarks/bench_model.py [--sizes toto_tiny toto_small toto_base] [--batch 4] [--seq 512] [--repeats 7]
        [--threads N] [--compile] [--attention] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from toto_robot.model.hf import export_hf  # noqa: E402
from toto_robot.model.toto import Toto, TotoConfig  # noqa: E402
from toto_robot.utils.flops import matmul_params  # noqa: E402


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakRSS:
    """Peak resident memory above the value at entry, sampled every millisecond in a thread
    (torch's kernels release the GIL, so the sampler runs during them)."""

    def __enter__(self):
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())
        self.delta = self.peak - self.start


def saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn`` runs (activation memory)."""
    seen: dict[int, int] = {}

    def pack(t):
        if t.device.type != "meta":
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


def alternate(fns: dict, repeats: int, warmup: int, sync) -> dict[str, list[float]]:
    """Seconds per call of each function, run round-robin (A B A B ...), after ``warmup`` rounds."""
    times = {k: [] for k in fns}
    for r in range(warmup + repeats):
        for k, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            if r >= warmup:
                times[k].append(time.perf_counter() - t0)
    return times


def summary(times: dict[str, list[float]], tokens: int) -> dict:
    ratios = [h / o for o, h in zip(times["ours"], times["hf"])]
    return {"ours_tok_s": tokens / statistics.median(times["ours"]), "hf_tok_s": tokens / statistics.median(times["hf"]),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "ours_s": times["ours"], "hf_s": times["hf"]}


LINEAR_OPS = ("aten::mm", "aten::addmm")  # the linear layers and the head
ATTENTION_OPS = ("aten::bmm", "aten::baddbmm", "aten::baddbmm_", "aten::addmm_")  # the blocked kernel's products


def matmul_seconds(fn) -> dict[str, float]:
    """Seconds of one call of ``fn`` in the linear layers' matmuls, in attention's matrix products (the
    blocked kernel's or torch's fused kernel), and in all ops, from torch's profiler (self times, so
    nested ops are not counted twice)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    return {"linear": sum(e.self_cpu_time_total for e in events if e.key in LINEAR_OPS) / 1e6,
            "attention": sum(e.self_cpu_time_total for e in events if e.key in ATTENTION_OPS or "scaled_dot_product" in e.key) / 1e6,
            "all": sum(e.self_cpu_time_total for e in events) / 1e6}


def set_blocked(model: Toto, on: bool) -> None:
    for block in model.layers:
        block.attn.blocked = on


def matmul_rate(n: int = 1024, device: str = "cpu") -> float:
    """FLOP/s of an n^3 float32 matmul on this machine, median of 5."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    t = alternate({"mm": lambda: a @ b}, 5, 2, sync)["mm"]
    return 2 * n**3 / statistics.median(t)


def bench_size(size: str, args, device: str) -> dict:
    torch.manual_seed(0)
    cfg = TotoConfig.from_name(size)
    ours = Toto(cfg).to(device)
    hf = export_hf(ours).to(device)
    L = min(args.seq, cfg.block_size - 1)
    idx = torch.randint(4, cfg.vocab_size, (args.batch, L + 1), device=device)
    x, y = idx[:, :-1], idx[:, 1:]
    tokens = x.numel()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fwd_ours = torch.compile(ours) if args.compile else ours

    def step(model, hf_api: bool):
        model.zero_grad(set_to_none=True)
        # HF shifts its labels itself: both models compute L positions (L-1 or L loss terms)
        out = model(input_ids=x, labels=x) if hf_api else fwd_ours(x, targets=y)
        out.loss.backward()

    res = {"size": size, "params": ours.num_params(), "batch": args.batch, "positions": L, "tokens": tokens}
    ours.eval(), hf.eval()
    with torch.no_grad():
        t = alternate({"ours": lambda: fwd_ours(x), "hf": lambda: hf(input_ids=x)}, args.repeats, 1, sync)
    res["forward"] = summary(t, tokens)
    ours.train(), hf.train()
    t = alternate({"ours": lambda: step(ours, False), "hf": lambda: step(hf, True)}, args.repeats, 1, sync)
    res["train"] = summary(t, tokens)
    if args.attention:  # the same step with torch's attention kernel, alternated with the blocked one
        def unblocked():
            set_blocked(ours, False)
            step(ours, False)
            set_blocked(ours, True)

        t = alternate({"ours": lambda: step(ours, False), "torch_attention": unblocked}, args.repeats, 1, sync)
        res["blocked_attention_speedup"] = statistics.median(u / o for o, u in zip(t["ours"], t["torch_attention"]))
    if device == "cpu" and not args.compile:
        # HF's step runs the same linear-layer matmuls (same FLOPs, same BLAS) and an attention kernel
        # at least as slow: HF time / our matmul time bounds the ratio any other saving could reach
        sec = matmul_seconds(lambda: step(ours, False))
        matmul_s = sec["linear"] + sec["attention"]
        linear_flops = 6 * tokens * matmul_params(ours)
        res["bound"] = {**{f"{k}_s": v for k, v in sec.items()}, "matmul_share": matmul_s / sec["all"],
                        "ratio_ceiling": statistics.median(res["train"]["hf_s"]) / matmul_s,
                        "ratio_ceiling_linear": statistics.median(res["train"]["hf_s"]) / sec["linear"],
                        "linear_flop_s": linear_flops / sec["linear"], "reference_flop_s": matmul_rate()}
    mem = {}
    for name, run in (("ours", lambda: fwd_ours(x, targets=y).loss), ("hf", lambda: hf(input_ids=x, labels=x).loss)):
        mem[f"{name}_saved_mb"] = saved_bytes(run) / 2**20
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step(ours if name == "ours" else hf, name == "hf")
            mem[f"{name}_peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            with PeakRSS() as p:
                step(ours if name == "ours" else hf, name == "hf")
            mem[f"{name}_peak_mb"] = p.delta / 2**20
    res["memory"] = mem
    ours.eval()
    with torch.no_grad():
        t = alternate({"ours": lambda: ours(x), "hf": lambda: ours.features(x, [cfg.n_layer // 2])}, max(3, args.repeats // 2), 1, sync)
    res["features_speedup"] = statistics.median(f / o for o, f in zip(t["hf"], t["ours"]))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["toto_tiny", "toto_small", "toto_base"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512, help="positions per sequence (capped at the model's context - 1)")
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds (each round runs ours then HF)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as set by OMP_NUM_THREADS)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile our model (HF runs eager)")
    ap.add_argument("--attention", action="store_true", help="also time our step with torch's attention kernel (blocked off)")
    ap.add_argument("--json", default="", help="write all timings and figures here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{args.device}, {torch.get_num_threads()} threads, batch {args.batch}, median of {args.repeats} alternating rounds"
          f"{', ours compiled' if args.compile else ''}")
    results = []
    for size in args.sizes:
        r = bench_size(size, args, args.device)
        results.append(r)
        m = r["memory"]
        print(f"{size}: {r['params'] / 1e6:.2f}M params, {r['batch']} x {r['positions']} positions")
        for kind in ("forward", "train"):
            s = r[kind]
            label = "forward         " if kind == "forward" else "forward+backward"
            print(f"  {label} ours {s['ours_tok_s']:9.0f} tok/s  HF {s['hf_tok_s']:9.0f} tok/s  "
                  f"ratio {s['ratio_median']:.2f}x (min {s['ratio_min']:.2f}, max {s['ratio_max']:.2f})")
        print(f"  memory: saved for backward ours {m['ours_saved_mb']:.0f} MB, HF {m['hf_saved_mb']:.0f} MB; "
              f"peak above step start ours {m['ours_peak_mb']:.0f} MB, HF {m['hf_peak_mb']:.0f} MB")
        if "blocked_attention_speedup" in r:
            print(f"  blocked attention: our step {r['blocked_attention_speedup']:.2f}x as fast as with torch's attention kernel")
        if "bound" in r:
            b = r["bound"]
            print(f"  bound: matrix products are {100 * b['matmul_share']:.0f}% of our step ({b['linear_s']:.3f} s linear layers, "
                  f"{b['attention_s']:.3f} s attention); HF's step time over them: at most {b['ratio_ceiling']:.2f}x with all else free "
                  f"({b['ratio_ceiling_linear']:.2f}x over the linear layers' alone); "
                  f"linear-layer matmuls at {b['linear_flop_s'] / 1e9:.0f} GFLOP/s, {100 * b['linear_flop_s'] / b['reference_flop_s']:.0f}% of a 1024^3 matmul here")
        print(f"  features(layer {TotoConfig.from_name(size).n_layer // 2}) vs full forward: {r['features_speedup']:.2f}x faster")
    if args.json:
        from toto_robot.utils.io import atomic_save_json

        atomic_save_json({"device": args.device, "threads": torch.get_num_threads(), "compile": args.compile, "results": results}, args.json)


if __name__ == "__main__":
    main()
