"""Vision Transformer baselines (MAE, MVP) as frozen encoders, in timm / MAE parameter layout.

The module names follow ``timm.models.vision_transformer.VisionTransformer`` exactly
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.{i}.norm1/attn.qkv/attn.proj/
norm2/mlp.fc1/mlp.fc2``, ``norm``), which is also the layout of the official MAE
(facebookresearch/mae) and MVP (ir413/mvp) checkpoints, so their ``.pth`` files load as they are:

    enc = build_vit_encoder("mvp_vit_b", checkpoint="~/weights/mae_pretrain_egosoup_vit_base.pth")

Nothing is downloaded: the checkpoint is a local file the user gives (``.pth``/``.pt`` from
``torch.save`` or ``.safetensors``). Decoder, mask-token and classifier-head keys of MAE
pre-training/fine-tuning checkpoints are dropped; a position-embedding grid of another size is
resized bicubically (timm's ``resample_abs_pos_embed``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from toto_robot.encoders.base import Encoder, sincos_2d, to_model_input
from toto_robot.utils.io import CheckpointError, check_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ViTConfig:
    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6


# name -> ViTConfig kwargs. MAE/MVP release ViT-S/B/L at 224 px, patch 16; mae_tiny is this
# project's CPU size (64 px, patch 8) for tests and the demo.
VIT_CONFIGS: dict[str, dict] = {
    "mae_tiny": dict(img_size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3),
    "mae_vit_b": dict(embed_dim=768, depth=12, num_heads=12),
    "mae_vit_l": dict(embed_dim=1024, depth=24, num_heads=16),
    "mvp_vit_s": dict(embed_dim=384, depth=12, num_heads=6),
    "mvp_vit_b": dict(embed_dim=768, depth=12, num_heads=12),
    "mvp_vit_l": dict(embed_dim=1024, depth=24, num_heads=16),
}


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, 3, S, S) -> (B, N, C)


class Attention(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)  # (3, B, h, N, hs)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, h, N, hs)
        return self.proj(y.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        hidden = int(cfg.embed_dim * cfg.mlp_ratio)
        self.fc1 = nn.Linear(cfg.embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, cfg.embed_dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2D sin-cos position embedding with a zero cls slot: [1, 1 + grid*grid, dim]."""
    return torch.cat([torch.zeros(1, dim), sincos_2d(dim, grid)])[None]


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.config = cfg
        self.grid = cfg.img_size // cfg.patch_size
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(cfg.embed_dim, self.grid), requires_grad=False)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.apply(self._init_weights)
        nn.init.normal_(self.cls_token, std=0.02)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_layers(self, x: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
        """x float [B, 3, S, S] (normalised) -> {layer: patch tokens [B, N, C]}; the last layer is normed."""
        x = self.patch_embed(x)  # (B, N, C)
        x = x + self.pos_embed[:, 1:]
        cls = self.cls_token + self.pos_embed[:, :1]
        x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, C)
        out = {0: x[:, 1:]} if 0 in layers else {}
        for i, blk in enumerate(self.blocks[:max(layers)], start=1):
            x = blk(x)
            if i in layers:
                out[i] = (self.norm(x) if i == len(self.blocks) else x)[:, 1:]
        return out


def resample_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """[1, 1 + g*g, C] -> [1, 1 + grid*grid, C] (bicubic on the patch grid; cls slot kept)."""
    n = pos.shape[1] - 1
    g = int(math.isqrt(n))
    if g * g != n:
        raise CheckpointError(f"pos_embed with {n} patch positions is not a square grid")
    if g == grid:
        return pos
    patch = pos[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2).float()
    patch = F.interpolate(patch, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], patch.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)


_DROP_PREFIXES = ("decoder", "mask_token", "head.", "fc_norm.")


def load_vit_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a MAE/MVP/timm ViT checkpoint file into an encoder state dict (backbone keys only)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ViT checkpoint not found: {path} (MAE/MVP weights are loaded from a local file; nothing is downloaded)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read ViT checkpoint {path}: {e}") from e
    for key in ("model", "state_dict", "module"):
        if isinstance(raw, dict) and key in raw and isinstance(raw[key], dict):
            raw = raw[key]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    sd = {}
    for k, v in raw.items():
        for prefix in ("module.", "encoder.", "backbone.", "visual."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        sd[k] = v
    if "norm.weight" not in sd and "fc_norm.weight" in sd:  # fine-tuned with global pooling
        sd["norm.weight"], sd["norm.bias"] = sd["fc_norm.weight"], sd["fc_norm.bias"]
    return {k: v for k, v in sd.items() if not k.startswith(_DROP_PREFIXES)}


class ViTEncoder(Encoder):
    """A frozen ViT: tokens of block ``layer`` (default: last, after the final norm), attention/average pool."""

    kind = "vit"

    def __init__(self, name: str, config: ViTConfig, layer: int | None = None, pooling: str = "attention"):
        super().__init__(name, pooling)
        self.backbone = ViT(config)
        self.token_dim, self.num_layers, self.input_size = config.embed_dim, config.depth, config.img_size
        self.layer = config.depth if layer is None else int(layer)
        if not 1 <= self.layer <= config.depth:
            raise ValueError(f"{name}: layer {self.layer} outside 1..{config.depth}")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.token_grid = self.backbone.grid
        self._init_pool()

    def layer_tokens(self, frames, layers):
        video = frames.ndim == 5
        B = frames.shape[0]
        flat = frames.flatten(0, 1) if video else frames  # (B*T, H, W, 3)
        x = (to_model_input(flat, self.input_size, self.device) - self.mean) / self.std  # (B*T, 3, S, S)
        out = self.backbone.forward_layers(x, layers)
        return {l: t.reshape(B, -1, t.shape[-1]) for l, t in out.items()}  # video: (B, T*N, C)

    def spec(self):
        return asdict(self.backbone.config)

    @classmethod
    def from_spec(cls, name, spec, pooling, layer=None):
        return cls(name, ViTConfig(**spec), layer=layer, pooling=pooling)

    def load_backbone(self, path: str | Path) -> "ViTEncoder":
        sd = load_vit_state_dict(path)
        if "pos_embed" in sd:
            sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], self.backbone.grid)
        check_state_dict(self.backbone.state_dict(), sd, str(path), what=self.name, hint=" (a checkpoint of another ViT size?)")
        self.backbone.load_state_dict(sd)
        return self


def build_vit_encoder(name: str, checkpoint: str | None = None, layer: int | None = None, pooling: str = "attention",
                      **overrides) -> ViTEncoder:
    """``mae_tiny``/``mae_vit_b``/``mae_vit_l``/``mvp_vit_s``/``mvp_vit_b``/``mvp_vit_l``; weights from ``checkpoint``."""
    if name not in VIT_CONFIGS:
        raise KeyError(f"unknown ViT encoder {name!r}; known: {', '.join(VIT_CONFIGS)}")
    enc = ViTEncoder(name, ViTConfig(**{**VIT_CONFIGS[name], **overrides}), layer=layer, pooling=pooling)
    if checkpoint:
        enc.load_backbone(checkpoint)
    return enc
