"""Train a tokenizer on frames, report held-out PSNR, save a reconstruction grid and a loss curve."""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from toto_robot.tokenizers import Tokenizer, build_tokenizer
from toto_robot.utils.config import check_int, check_number
from toto_robot.utils.io import atomic_save_json, atomic_write

log = logging.getLogger(__name__)


@dataclass
class TokenizerTrainConfig:
    kind: str = "dvae"
    params: dict = field(default_factory=dict)  # constructor kwargs of the tokenizer
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    holdout_fraction: float = 0.1
    seed: int = 0
    device: str = "cpu"
    out_dir: str = "tokenizer"

    def __post_init__(self):
        """Checked before any work; errors name the hydra key (train.*) and the allowed range."""
        for key, low in (("steps", 1), ("batch_size", 1), ("seed", 0)):
            check_int(getattr(self, key), f"train.{key}", low=low)
        self.lr = check_number(self.lr, "train.lr", low=0, low_open=True)
        self.holdout_fraction = check_number(self.holdout_fraction, "train.holdout_fraction", low=0, high=0.5)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB between two uint8 frame batches."""
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def evaluate_psnr(tok: Tokenizer, frames: np.ndarray, batch_size: int = 64) -> float:
    tok.eval()
    scores = []
    for i in range(0, len(frames), batch_size):
        x = torch.from_numpy(frames[i:i + batch_size])
        scores.append(psnr(tok.decode(tok.encode(x)), x) * len(x))
    return sum(scores) / len(frames)


def save_recon_grid(tok: Tokenizer, frames: np.ndarray, path: Path, n: int = 8) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = torch.from_numpy(frames[:n])
    rec = tok.decode(tok.encode(x)).numpy()
    fig, axes = plt.subplots(2, len(x), figsize=(1.6 * len(x), 3.4))
    for i in range(len(x)):
        for row, img in enumerate((frames[i], rec[i])):
            ax = axes[row, i] if len(x) > 1 else axes[row]
            ax.imshow(img)
            ax.axis("off")
    fig.suptitle(f"{tok.kind} tokenizer: originals (top) and reconstructions (bottom), held-out frames")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    return path


def train_tokenizer(cfg: TokenizerTrainConfig, frames: np.ndarray) -> Path:
    """Train on uint8 frames [N, H, W, 3]; writes the tokenizer, metrics.json, loss.csv, recon.png."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"training frames must be uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}")
    out = Path(cfg.out_dir)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    order = rng.permutation(len(frames))
    n_hold = max(1, int(len(frames) * cfg.holdout_fraction))
    held, train = frames[order[:n_hold]], frames[order[n_hold:]]
    tok = build_tokenizer(cfg.kind, **cfg.params).to(cfg.device)
    rows = []
    if any(p.requires_grad for p in tok.parameters()):
        tok.train()
        tok.check_frames(train[:1])
        opt = torch.optim.AdamW(tok.parameters(), lr=cfg.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
        bar = tqdm(range(cfg.steps), desc=f"train {cfg.kind} tokenizer", unit="step")
        for step in bar:
            idx = rng.integers(0, len(train), cfg.batch_size)
            x = torch.from_numpy(train[idx]).to(cfg.device).permute(0, 3, 1, 2).float() / 255.0
            loss, metrics = tok.training_loss(x, step, cfg.steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tok.parameters(), 1.0)
            opt.step()
            sched.step()
            rows.append({"step": step, "loss": loss.item(), **metrics})
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", mse=f"{metrics.get('mse', 0):.4f}")
    tok.eval()
    score = evaluate_psnr(tok, held)
    tok.save_pretrained(out)
    metrics = {"psnr_heldout_db": score, "heldout_frames": int(n_hold), "train_frames": int(len(train)), "steps": cfg.steps,
               "kind": cfg.kind, "hash": tok.hash()}
    if rows:
        with atomic_write(out / "loss.csv", "w") as f:
            w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
            w.writeheader()
            w.writerows(rows)
    save_recon_grid(tok, held, out / "recon.png")
    atomic_save_json(metrics, out / "metrics.json")
    log.info("tokenizer %s: held-out PSNR %.2f dB", cfg.kind, score)
    return out
