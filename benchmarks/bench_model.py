"""Toto decoder throughput against Hugging Face's LlamaForCausalLM on the same weights (same process).

The two models run alternately (ours, HF, ours, HF, ...), so load from other jobs on a shared machine
hits both alike; each round gives one ratio HF time / our time, and the script prints the median
ratio with its spread (min-max over rounds), median tokens/s of each, and memory: the bytes autograd
saves for the backward pass (exact, per model) and the peak resident memory above the step's start
(sampled; CUDA: max allocated). Both models see the same tokens and compute the same number of positions.
    python benchmarks/bench_model.py [--sizes toto_tiny toto_small toto_base] [--batch 4] [--seq 512] [--repeats 7]
        [--threads N] [--compile] [--json out.json]
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
        print(f"  features(layer {TotoConfig.from_name(size).n_layer // 2}) vs full forward: {r['features_speedup']:.2f}x faster")
    if args.json:
        from toto_robot.utils.io import atomic_save_json

        atomic_save_json({"device": args.device, "threads": torch.get_num_threads(), "compile": args.compile, "results": results}, args.json)


if __name__ == "__main__":
    main()
