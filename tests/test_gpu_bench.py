"""The GPU MFU benchmark's code path (trainer step, FSDP2 in a process group of one, bf16 parameters,
activation checkpointing) run at tiny size on the CPU, with only the packages a bare GPU machine has."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the GPU machine has (torch and its own requirements, numpy, safetensors, tqdm, pyyaml, einops): the
# benchmark runs with ``python -S`` on a path that holds links to these packages only.
GPU_MACHINE = ("torch", "torchgen", "functorch", "numpy", "numpy.libs", "safetensors", "tqdm", "yaml", "_yaml", "einops",
               "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "typing_extensions.py", "filelock", "fsspec")


def gpu_machine_env(tmp_path: Path) -> dict:
    import torch

    site = Path(torch.__file__).resolve().parents[1]
    pkgs = tmp_path / "site"
    pkgs.mkdir()
    for name in GPU_MACHINE:
        if (site / name).exists():
            (pkgs / name).symlink_to(site / name)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{pkgs}", "PYTHONNOUSERSITE": "1"}


def test_mfu_benchmark_runs_the_fsdp2_bf16_checkpointed_path_on_cpu_with_gpu_machine_packages_only(tmp_path):
    out = tmp_path / "mfu.json"
    cmd = [sys.executable, "-S", str(ROOT / "benchmarks" / "bench_gpu_mfu.py"), "--device", "cpu", "--sizes", "toto_tiny",
           "--seq", "32", "--batch", "2", "--steps", "2", "--warmup", "1", "--matmul-size", "128", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=gpu_machine_env(tmp_path), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["world_size"] == 1 and report["dtype"] == "bf16" and report["matmul_tflops"] > 0
    (r,) = report["results"]
    assert r["fsdp"] and r["param_class"] == "DTensor" and r["activation_checkpointing"]
    assert len(r["losses"]) == 3 and all(4.0 < v < 8.0 for v in r["losses"])  # about ln(516) at init
    # the analytic count: 6 FLOPs per parameter (tied head counted once) + 12 * layers * width * sequence
    assert r["flops_per_token"] == 6 * r["params"] + 12 * 4 * 128 * 32
    assert r["achieved_tflops"] == pytest.approx(r["flops_per_token"] * r["tokens_per_s"] / 1e12)
    assert r["mfu_vs_peak"] == pytest.approx(r["achieved_tflops"] / 989.0)
    assert r["mfu_vs_matmul"] == pytest.approx(r["achieved_tflops"] / report["matmul_tflops"])
    assert "MFU" in res.stdout


def test_the_simulated_gpu_machine_lacks_the_project_s_other_dependencies(tmp_path):
    env = gpu_machine_env(tmp_path)
    for module in ("hydra", "omegaconf", "mujoco", "av", "gymnasium", "matplotlib"):
        res = subprocess.run([sys.executable, "-S", "-c", f"import {module}"], capture_output=True, text=True, env=env, timeout=60)
        assert res.returncode != 0 and "ModuleNotFoundError" in res.stderr, module
    res = subprocess.run([sys.executable, "-S", "-c", "import torch, numpy, yaml, tqdm, safetensors"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
