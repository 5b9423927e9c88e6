"""Masked autoencoder (He et al. 2022) around this project's ViT, for the matched-compute baseline.

The encoder is ``encoders.vit.ViT`` itself, so the trained weights are a ViT state dict in the
timm/MAE layout that ``build_encoder("mae_tiny", checkpoint=...)`` loads like an official MAE
checkpoint; the decoder keys carry the official ``decoder_*`` names and are dropped on load.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from toto_robot.encoders.vit import IMAGENET_MEAN, IMAGENET_STD, Block, ViT, ViTConfig, sincos_pos_embed


@dataclass
class MAEConfig:
    encoder: ViTConfig
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, 3, S, S] -> [B, N, p*p*3] (MAE's patch order: rows, then columns, channels last)."""
    B, C, S, _ = x.shape
    g = S // p
    x = x.reshape(B, C, g, p, g, p)
    return torch.einsum("bchpwq->bhwpqc", x).reshape(B, g * g, p * p * C)


class MAE(nn.Module):
    def __init__(self, cfg: MAEConfig):
        super().__init__()
        self.config = cfg
        self.vit = ViT(cfg.encoder)
        C, D, p = cfg.encoder.embed_dim, cfg.decoder_dim, cfg.encoder.patch_size
        self.decoder_embed = nn.Linear(C, D)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, D))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(D, self.vit.grid), requires_grad=False)
        dec_cfg = ViTConfig(embed_dim=D, depth=cfg.decoder_depth, num_heads=cfg.decoder_heads)
        self.decoder_blocks = nn.ModuleList(Block(dec_cfg) for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(D, eps=1e-6)
        self.decoder_pred = nn.Linear(D, p * p * 3)
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x float [B, 3, S, S] in [0, 1] -> (loss on masked patches, mask [B, N] with 1 = masked)."""
        vit, cfg = self.vit, self.config
        x = (x - self.mean) / self.std
        target = patchify(x, cfg.encoder.patch_size)  # (B, N, p*p*3)
        tokens = vit.patch_embed(x) + vit.pos_embed[:, 1:]  # (B, N, C)
        B, N, C = tokens.shape
        keep = max(1, int(N * (1 - cfg.mask_ratio)))
        order = torch.rand(B, N, device=x.device).argsort(dim=1)  # random shuffle per sample
        restore = order.argsort(dim=1)
        kept = torch.gather(tokens, 1, order[:, :keep, None].expand(-1, -1, C))  # (B, keep, C)
        cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(B, -1, -1)
        h = torch.cat([cls, kept], dim=1)
        for blk in vit.blocks:
            h = blk(h)
        h = self.decoder_embed(vit.norm(h))  # (B, 1+keep, D)
        D = h.shape[-1]
        full = torch.cat([h[:, 1:], self.mask_token.expand(B, N - keep, -1)], dim=1)  # (B, N, D) in shuffled order
        full = torch.gather(full, 1, restore[:, :, None].expand(-1, -1, D))  # back to raster order
        h = torch.cat([h[:, :1], full], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            h = blk(h)
        pred = self.decoder_pred(self.decoder_norm(h))[:, 1:]  # (B, N, p*p*3)
        mask = torch.ones(B, N, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, restore)  # 1 where the patch was hidden
        if cfg.norm_pix_loss:
            mu, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mu) / (var + 1e-6).sqrt()
        per_patch = F.mse_loss(pred, target, reduction="none").mean(-1)  # (B, N)
        return (per_patch * mask).sum() / mask.sum(), mask

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """The official MAE checkpoint layout: ViT keys at the top level, decoder keys beside them."""
        sd = {f"{k}": v for k, v in self.vit.state_dict().items()}
        sd.update({k: v for k, v in self.state_dict().items() if not k.startswith("vit.")})
        return {k: v.detach().contiguous() for k, v in sd.items()}
