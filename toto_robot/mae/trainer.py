"""Pre-train a tiny MAE on the same frames as a tiny Toto (the matched-compute baseline).

    out = pretrain_mae(MAEPretrainConfig(out_dir="runs/mae", steps=300), frames)   # frames uint8 [N, S, S, 3]
    enc = build_encoder("mae_tiny", checkpoint=str(out / "mae_vit.safetensors"))

Writes ``mae_vit.safetensors`` (MAE checkpoint layout), ``metrics.csv``, ``loss_curve.png`` and
``metrics.json`` (final masked-patch loss on held-out frames). Every ``checkpoint_every`` steps ``checkpoint/``
(weights, optimizer, both RNGs, the loss rows) is replaced by ``utils.io.save_checkpoint``; ``resume=True``
continues from it, and the resumed run ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import json
import zlib
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from toto_robot.encoders.vit import VIT_CONFIGS, ViTConfig
from toto_robot.mae.model import MAE, MAEConfig
from toto_robot.pretrain.schedule import lr_at
from toto_robot.utils.config import ConfigError
from toto_robot.utils.flops import train_flops
from toto_robot.utils.io import (CheckpointError, atomic_save_json, atomic_save_tensors, atomic_write, atomic_write_csv, find_checkpoint,
                                 remove_partial, save_checkpoint)
from toto_robot.utils.plots import pyplot, save_figure


@dataclass
class MAEPretrainConfig:
    out_dir: str
    vit: str = "mae_tiny"
    steps: int = 300
    batch_size: int = 64
    lr: float = 1.5e-3
    min_lr: float = 1e-5
    warmup_steps: int = 30
    weight_decay: float = 0.05
    mask_ratio: float = 0.75
    holdout: int = 128
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 200
    resume: bool = False

    def run_key(self) -> dict:
        """What a resumed run must share with the checkpoint it continues."""
        return {k: v for k, v in asdict(self).items() if k not in ("out_dir", "checkpoint_every", "resume", "device")}


CHECKPOINT_FILES = ("trainer_state.pt", "trainer_state.json")


def frames_signature(frames: np.ndarray) -> list:
    """Shape and a CRC of every 64th frame: a resumed run refuses other frames than it started on."""
    return [*frames.shape, zlib.crc32(np.ascontiguousarray(frames[::64]).tobytes())]


def pretrain_mae(cfg: MAEPretrainConfig, frames: np.ndarray, **vit_overrides) -> Path:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"MAE training frames must be uint8 [N, S, S, 3], got {frames.dtype} {frames.shape}")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_partial(out)  # what an interrupted write of the final files left
    ckpt, signature = out / "checkpoint", frames_signature(frames)
    found = find_checkpoint(ckpt, CHECKPOINT_FILES)
    if found and not cfg.resume:
        raise CheckpointError(f"{found} already holds an MAE checkpoint; pass resume=True to continue it or choose a new out_dir")
    if cfg.resume and not found:
        raise CheckpointError(f"resume=True but {out} holds no complete MAE checkpoint (looked in checkpoint/ and checkpoint.old/)")
    atomic_save_json(asdict(cfg), out / "mae_config.json")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    vit_cfg = ViTConfig(**{**VIT_CONFIGS[cfg.vit], **vit_overrides})
    if frames.shape[1] != vit_cfg.img_size:
        raise ConfigError(f"{cfg.vit} takes {vit_cfg.img_size} px frames, got {frames.shape[1]} px")
    model = MAE(MAEConfig(vit_cfg, mask_ratio=cfg.mask_ratio)).to(cfg.device)
    order = rng.permutation(len(frames))
    held, train = frames[order[:cfg.holdout]], frames[order[cfg.holdout:]]
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95))

    def batch(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x).to(cfg.device).permute(0, 3, 1, 2).float() / 255.0
        return t

    rows, step_flops, start = [], 0, 0
    if found:
        start, rows, step_flops = _load_checkpoint(found, cfg, signature, model, opt, rng)
    bar = tqdm(range(start, cfg.steps), desc="mae pretrain", unit="step", initial=start, total=cfg.steps)
    for step in bar:
        lr = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        x = batch(train[rng.integers(0, len(train), cfg.batch_size)])
        if rng.random() < 0.5:
            x = x.flip(-1)
        model.train()
        opt.zero_grad(set_to_none=True)
        with train_flops() if not step_flops else nullcontext() as counter:  # the first step is measured
            loss, _ = model(x)
            loss.backward()
        step_flops = step_flops or counter.total
        opt.step()
        rows.append({"step": step, "loss": loss.item(), "lr": lr})
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            _save_checkpoint(ckpt, cfg, signature, model, opt, rng, step + 1, rows, step_flops)
    model.eval()
    with torch.no_grad():
        torch.manual_seed(cfg.seed + 1)
        held_loss = float(np.mean([model(batch(held[i:i + 64]))[0].item() for i in range(0, len(held), 64)]))
    atomic_save_tensors(model.checkpoint_state_dict(), out / "mae_vit.safetensors")
    atomic_write_csv(rows, out / "metrics.csv", ["step", "loss", "lr"])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("masked-patch MSE (normalized pixels)")
    ax.set_title(f"MAE pre-training ({cfg.vit})")
    ax.grid(alpha=0.3)
    save_figure(fig, out / "loss_curve.png")
    metrics = {"steps": cfg.steps, "final_loss": rows[-1]["loss"], "heldout_loss": held_loss, "first_loss": rows[0]["loss"],
               "params": sum(p.numel() for p in model.vit.parameters()), "flops_per_step": step_flops, "train_flops": step_flops * cfg.steps}
    atomic_save_json(metrics, out / "metrics.json")
    return out


def _save_checkpoint(ckpt: Path, cfg: MAEPretrainConfig, signature: list, model, opt, rng: np.random.Generator, step: int, rows: list,
                     step_flops: int) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state()}
    meta = {"step": step, "rows": rows, "flops_per_step": step_flops, "numpy_rng": rng.bit_generator.state, "config": cfg.run_key(),
            "frames": signature}

    def write(folder: Path) -> None:
        with atomic_write(folder / "trainer_state.pt") as f:
            torch.save(state, f)
        atomic_save_json(meta, folder / "trainer_state.json")

    save_checkpoint(ckpt, write, CHECKPOINT_FILES)  # at every instant checkpoint/ or checkpoint.old/ is complete


def _load_checkpoint(found: Path, cfg: MAEPretrainConfig, signature: list, model, opt, rng: np.random.Generator) -> tuple[int, list, int]:
    meta = json.loads((found / "trainer_state.json").read_text())
    key = cfg.run_key()
    if meta["config"] != key:
        diff = sorted(k for k in key if meta["config"].get(k) != key[k])
        there = ", ".join(f"{k}={meta['config'].get(k)!r}" for k in diff)
        now = ", ".join(f"{k}={key[k]!r}" for k in diff)
        raise CheckpointError(f"{found} was written by another MAE run: {there} there, {now} now")
    if meta["frames"] != signature:
        raise CheckpointError(f"{found} was trained on other frames ({meta['frames'][:4]} and another checksum) than these "
                              f"({signature[:4]}); resume with the same frames or choose a new out_dir")
    try:  # weights_only: tensors and plain Python only, so a crafted file cannot run code
        state = torch.load(found / "trainer_state.pt", map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"refusing to load {found / 'trainer_state.pt'}: not a trainer state of tensors and plain values ({e})") from e
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    rng.bit_generator.state = meta["numpy_rng"]
    return int(meta["step"]), list(meta["rows"]), int(meta["flops_per_step"])
