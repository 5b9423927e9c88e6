"""Scaling sweep (paper Sec. 4.9): train a family of small Totos on the same shards with the same
token budget, then fit the power law L(C) = a * C^b of final held-out loss against training
compute C = 6 * N * D (N non-embedding parameters, D training tokens).

    from toto_robot.pretrain.scaling import ScalingConfig, scaling_sweep
    fit = scaling_sweep(ScalingConfig(shards="runs/tok/shards", out_dir="runs/scaling", widths=[32, 64, 128]))
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from toto_robot.pretrain.trainer import PretrainConfig, pretrain
from toto_robot.utils.io import atomic_save_json, atomic_write_csv
from toto_robot.utils.plots import pyplot, save_figure


@dataclass
class ScalingConfig:
    shards: str
    out_dir: str
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])  # n_embd of each model; heads = width // 32
    n_layer: int = 4
    steps: int = 300
    batch_tokens: int = 4096
    micro_batch: int = 8
    lr: float = 3e-3
    seed: int = 0
    device: str = "cpu"


def fit_power_law(compute: np.ndarray, loss: np.ndarray) -> tuple[float, float]:
    """Least squares in log-log space: L = a * C^b -> (a, b)."""
    compute, loss = np.asarray(compute, float), np.asarray(loss, float)
    if len(compute) < 2 or np.any(compute <= 0) or np.any(loss <= 0):
        raise ValueError("a power-law fit needs at least two runs with positive compute and loss")
    b, log_a = np.polyfit(np.log(compute), np.log(loss), 1)
    return float(np.exp(log_a)), float(b)


def scaling_sweep(cfg: ScalingConfig) -> dict:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_json(asdict(cfg), out / "scaling_config.json")
    rows = []
    for width in cfg.widths:
        run = out / f"width{width}"
        overrides = {"n_embd": width, "n_head": max(1, width // 32), "n_layer": cfg.n_layer, "mlp_hidden": 4 * width}
        if not (run / "metrics.json").is_file():  # finished runs are kept: an interrupted sweep continues
            pretrain(PretrainConfig(shards=cfg.shards, out_dir=str(run), model="toto_tiny", model_overrides=overrides, lr=cfg.lr,
                                    min_lr=cfg.lr / 10, warmup_steps=max(1, cfg.steps // 10), max_steps=cfg.steps, batch_tokens=cfg.batch_tokens,
                                    micro_batch=cfg.micro_batch, checkpoint_every=cfg.steps, log_every=max(1, cfg.steps // 20),
                                    resume=(run / "checkpoint").exists(), seed=cfg.seed, device=cfg.device))
        metrics = json.loads((run / "metrics.json").read_text())
        n = non_embedding_params(width, cfg.n_layer)
        tokens = metrics["steps"] * json.loads((run / "pretrain_config.json").read_text())["tokens_per_step"]
        rows.append({"width": width, "params": n, "tokens": tokens, "compute": 6.0 * n * tokens, "eval_loss": metrics["eval_loss"]})
    a, b = fit_power_law(np.array([r["compute"] for r in rows]), np.array([r["eval_loss"] for r in rows]))
    atomic_write_csv(rows, out / "scaling.csv")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    c = np.array([r["compute"] for r in rows])
    ax.loglog(c, [r["eval_loss"] for r in rows], "o", label="runs")
    grid = np.geomspace(c.min(), c.max(), 50)
    ax.loglog(grid, a * grid**b, "-", label=f"L = {a:.3g} C^{b:.3f}")
    ax.set_xlabel("training compute C = 6ND (FLOPs)")
    ax.set_ylabel("held-out loss")
    ax.set_title("Toto scaling")
    ax.legend()
    save_figure(fig, out / "scaling.png")
    fit = {"a": a, "b": b, "runs": rows}
    atomic_save_json(fit, out / "fit.json")
    return fit


def non_embedding_params(width: int, n_layer: int) -> int:
    """Attention (4 C^2) + SwiGLU (3 * C * 4C) + 2 RMSNorm weights per block, and the final norm."""
    return n_layer * (4 * width * width + 12 * width * width + 2 * width) + width
