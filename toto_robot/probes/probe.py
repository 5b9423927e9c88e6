"""A probe on frozen tokens: pooling (attention, average, spatial_attention, keypoints or grid) -> BatchNorm (no affine) -> linear classifier.

The paper's protocol (Sec. 3.5): the backbone is frozen; the attention pool and the linear layer
are trained together with AdamW and a cosine schedule. Tokens are extracted once per layer and
cached (float16), so a layer sweep trains many probes on one feature pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from toto_robot.encoders.base import build_pool


class Probe(nn.Module):
    def __init__(self, dim: int, num_classes: int, pooling: str = "attention", grid: int | None = None):
        super().__init__()
        self.pool = build_pool(pooling, dim, grid=grid)  # grid: the side of one frame's token raster (grid pooling needs it)
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.pool(tokens.float())))  # (B, N, C) -> (B, classes)


@dataclass
class ProbeResult:
    train_acc: float
    val_acc: float
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, loss, val_acc
    val_correct: list[int] = field(default_factory=list)  # 1 where the final probe is right, per validation item (paired tests)


@torch.no_grad()
def correct(probe: Probe, tokens: torch.Tensor, y: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Bool [N]: where the probe's class is the label."""
    probe.eval()
    return torch.cat([probe(tokens[i:i + batch]).argmax(-1) == y[i:i + batch] for i in range(0, len(y), batch)])


def accuracy(probe: Probe, tokens: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    return int(correct(probe, tokens, y, batch).sum()) / max(1, len(y))


def train_probe(train_tokens: torch.Tensor, y_train: torch.Tensor, val_tokens: torch.Tensor, y_val: torch.Tensor,
                num_classes: int, pooling: str = "attention", epochs: int = 60, lr: float = 1e-2, weight_decay: float = 0.05,
                batch_size: int = 64, seed: int = 0, eval_every: int = 10) -> ProbeResult:
    """Train a fresh probe on cached tokens [N, L, C]; returns train/val accuracy and the curve (validation
    accuracy every ``eval_every`` epochs and after the last; scoring never changes the training)."""
    if train_tokens.ndim != 3:
        raise ValueError(f"probe tokens must be [N, L, C], got {tuple(train_tokens.shape)}")
    if int(y_train.max()) >= num_classes or int(y_train.min()) < 0:
        raise ValueError(f"labels outside 0..{num_classes - 1}")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    side = math.isqrt(train_tokens.shape[1])
    probe = Probe(train_tokens.shape[-1], num_classes, pooling, grid=side if side * side == train_tokens.shape[1] else None)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(y_train) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    history = []
    for epoch in range(epochs):
        probe.train()
        perm = torch.randperm(len(y_train), generator=g)
        total = 0.0
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss = F.cross_entropy(probe(train_tokens[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        history.append({"epoch": epoch + 1, "loss": total / len(y_train)})
        if (epoch + 1) % eval_every == 0 and epoch + 1 < epochs:
            history[-1]["val_acc"] = accuracy(probe, val_tokens, y_val)
    val_correct = correct(probe, val_tokens, y_val)
    history[-1]["val_acc"] = int(val_correct.sum()) / max(1, len(y_val))
    return ProbeResult(accuracy(probe, train_tokens, y_train), history[-1]["val_acc"], history, val_correct.int().tolist())
