"""Vision Transformer baselines (MAE, MVP, VC-1) as frozen encoders, in timm / MAE parameter layout.

The module names follow ``timm.models.vision_transformer.VisionTransformer`` exactly
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.{i}.norm1/attn.qkv/attn.proj/
norm2/mlp.fc1/mlp.fc2``, ``norm``, ``fc_norm``), which is also the layout of the official MAE
(facebookresearch/mae), MVP (ir413/mvp) and VC-1 (facebookresearch/eai-vc) checkpoints, so their
``.pth`` files load as they are:

    enc = build_vit_encoder("mvp_vit_b", checkpoint="~/weights/mae_pretrain_egosoup_vit_base.pth", pooling="authors")
    enc = build_vit_encoder("vc1_vit_l", checkpoint="~/weights/vc1_vitl.pth", pooling="authors")

Each baseline as its authors run it (``pooling="authors"``):

* MVP ``vits/vitb/vitl`` (``mvp_vit_s/b/l``): 12/12/16 heads; the feature is the class token after
  the final LayerNorm (MVP then learns a linear projector inside the policy). The released ViT-L
  (``vitl-256-mae-egosoup``) is a 256 px model: ``mvp_vit_l`` runs at 256 px on its own 16 x 16
  position grid; ``img_size=224`` interpolates that grid and warns.
* VC-1 (``vc1_vit_b``/``vc1_vit_l``, also spelled ``vc1_vitb``/``vc1_vitl``): the final-norm class
  token, with VC-1's transform (shorter side to 256 bicubic, centre crop 224, ImageNet normalisation).
* MAE pre-training checkpoints: the final-norm class token (``models_vit`` without global pooling);
  checkpoints fine-tuned with ``--global_pool`` (an ``fc_norm`` and no ``norm``): ``fc_norm`` of the
  mean of the last block's patch tokens (``pooling="global_pool"``).

``pooling`` may also be ``cls`` or ``global_pool`` by name, or one of the project's trainable pools
(attention, average, spatial_attention, keypoints) over the patch tokens, which are what probes read.

Nothing is downloaded: the checkpoint is a local file the user gives (``.pth``/``.pt`` from
``torch.save`` or ``.safetensors``). Decoder, mask-token and classifier-head keys of MAE
pre-training/fine-tuning checkpoints are dropped; a position-embedding grid of another size is
resized bicubically (as timm's ``resize_pos_embed``, which MVP and VC-1 call), with a warning.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from toto_robot.encoders.base import READOUT_POOLINGS, Encoder, ReadoutPool, as_frames, build_pool, sincos_2d, to_model_input
from toto_robot.errors import UnknownNameError
from toto_robot.utils.config import ConfigError
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
    final_norm: bool = True  # False: a ``--global_pool`` fine-tuned MAE, whose ``norm`` was replaced by ``fc_norm``
    fc_norm: bool = False  # MAE's global-pool norm, applied to the mean patch token
    resize_shorter: int | None = None  # VC-1's transform: shorter side to this (bicubic), then centre crop img_size
    pos_embed: bool = True  # False: no position code in the tokens (an ablation control; a checkpoint's code is dropped)


# name -> ViTConfig kwargs, as each model's authors build it (heads from MAE's models_vit, MVP's
# backbones/vit.py, VC-1's vc_models/models/vit/vit.py). mae_tiny is this project's CPU size
# (64 px, patch 8) for tests and the demo.
VIT_CONFIGS: dict[str, dict] = {
    "mae_tiny": dict(img_size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3),
    "mae_vit_b": dict(embed_dim=768, depth=12, num_heads=12),
    "mae_vit_l": dict(embed_dim=1024, depth=24, num_heads=16),
    "mvp_vit_s": dict(embed_dim=384, depth=12, num_heads=12),  # MVP's vit_s16: 12 heads of 32 (DeiT-S has 6)
    "mvp_vit_b": dict(embed_dim=768, depth=12, num_heads=12),
    "mvp_vit_l": dict(img_size=256, embed_dim=1024, depth=24, num_heads=16),  # vitl-256-mae-egosoup
    "vc1_vit_b": dict(embed_dim=768, depth=12, num_heads=12, resize_shorter=256),
    "vc1_vit_l": dict(embed_dim=1024, depth=24, num_heads=16, resize_shorter=256),
}
VIT_ALIASES = {"vc1_vitb": "vc1_vit_b", "vc1_vitl": "vc1_vit_l"}  # eai-vc's own names
# The feature each model's authors feed their policies / probes ("authors" pooling). A checkpoint
# fine-tuned with MAE's --global_pool (it has fc_norm) reads out "global_pool" instead.
AUTHORS_READOUT = {name: "cls" for name in VIT_CONFIGS}


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
        pos = sincos_pos_embed(cfg.embed_dim, self.grid)  # (1, 1 + grid^2, C)
        self.pos_embed = nn.Parameter(pos if cfg.pos_embed else torch.zeros_like(pos), requires_grad=False)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps) if cfg.final_norm else nn.Identity()
        if cfg.fc_norm:
            self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
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

    def forward_sequence(self, x: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
        """x float [B, 3, S, S] (normalised) -> {layer: [B, 1 + N, C]}, class token first, no final norm."""
        x = self.patch_embed(x)  # (B, N, C)
        x = x + self.pos_embed[:, 1:]
        cls = self.cls_token + self.pos_embed[:, :1]
        x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, C)
        out = {0: x} if 0 in layers else {}
        for i, blk in enumerate(self.blocks[:max(layers)], start=1):
            x = blk(x)
            if i in layers:
                out[i] = x
        return out

    def forward_layers(self, x: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
        """x float [B, 3, S, S] (normalised) -> {layer: patch tokens [B, N, C]}; the last layer is normed."""
        return {i: (self.norm(t) if i == len(self.blocks) else t)[:, 1:] for i, t in self.forward_sequence(x, layers).items()}

    def readout(self, x: torch.Tensor, kind: str, layer: int | None = None) -> torch.Tensor:
        """x float [B, 3, S, S] (normalised) -> [B, C]: the authors' feature.

        ``cls``: the class token, after the final norm at the last block (MVP ``extract_feat`` + ``forward_norm``,
        VC-1 ``use_cls``, MAE ``models_vit`` without global pooling). ``global_pool``: ``fc_norm`` of the mean of the
        last block's patch tokens, class token excluded (MAE ``models_vit`` / VC-1 with ``global_pool``)."""
        depth = len(self.blocks)
        layer = depth if layer is None else layer
        t = self.forward_sequence(x, [layer])[layer]  # (B, 1+N, C)
        if kind == "cls":
            return (self.norm(t) if layer == depth else t)[:, 0]
        if kind == "global_pool":
            if not self.config.fc_norm or layer != depth:
                raise ConfigError("global_pool reads the last block through fc_norm (build the ViT with fc_norm=True, layer = depth)")
            return self.fc_norm(t[:, 1:].mean(dim=1))
        raise ConfigError(f"unknown ViT read-out {kind!r}: expected one of {', '.join(READOUT_POOLINGS)}")


def vit_input(frames_u8: torch.Tensor, cfg: ViTConfig, device) -> torch.Tensor:
    """uint8 [B,H,W,3] -> float [B,3,S,S] in [0,1] as the model's authors prepare frames.

    Default: centre square crop, antialiased resize to ``img_size``. ``resize_shorter`` (VC-1's
    ``vit_transforms``): shorter side to ``resize_shorter`` with antialiased bicubic (torchvision's
    ``Resize(..., BICUBIC)`` on tensors), then a centre ``img_size`` crop (``CenterCrop``)."""
    if not cfg.resize_shorter:
        return to_model_input(frames_u8, cfg.img_size, device)
    x = frames_u8.to(device).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
    H, W = x.shape[-2:]
    r = cfg.resize_shorter
    size = (r, int(r * W / H)) if H <= W else (int(r * H / W), r)  # torchvision's _compute_resized_output_size
    if size != (H, W):
        x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
    h, w = x.shape[-2:]
    s = cfg.img_size
    if h < s or w < s:
        raise ConfigError(f"resize_shorter={r} is smaller than the crop img_size={s}")
    top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
    return x[..., top:top + s, left:left + s]


def resample_pos_embed(pos: torch.Tensor, grid: int, what: str = "ViT", patch_size: int | None = None) -> torch.Tensor:
    """[1, 1 + g*g, C] -> [1, 1 + grid*grid, C] (bicubic on the patch grid, no antialiasing, as timm's
    ``resize_pos_embed`` that MVP and VC-1 call; cls slot kept). Warns when it resizes: the model then runs
    at another resolution than its checkpoint was trained at."""
    n = pos.shape[1] - 1
    g = int(math.isqrt(n))
    if g * g != n:
        raise CheckpointError(f"pos_embed with {n} patch positions is not a square grid")
    if g == grid:
        return pos
    px = f" ({g * patch_size} px -> {grid * patch_size} px)" if patch_size else ""
    warnings.warn(f"{what}: checkpoint position grid {g}x{g} interpolated to {grid}x{grid}{px}; the checkpoint was trained "
                  f"on its own grid (leave img_size at the model's default to run it natively)", stacklevel=3)
    patch = pos[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2).float()
    patch = F.interpolate(patch, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], patch.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)


_DROP_PREFIXES = ("decoder", "mask_token", "head.", "head_dist.", "pre_logits.")


def load_vit_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a MAE/MVP/VC-1/timm ViT checkpoint file into an encoder state dict (backbone keys, ``norm`` and/or
    ``fc_norm`` as the file has them)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ViT checkpoint not found: {path} (MAE/MVP/VC-1 weights are loaded from a local file; nothing is downloaded)")
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
    return {k: v for k, v in sd.items() if not k.startswith(_DROP_PREFIXES)}


def checkpoint_layout(sd: dict[str, torch.Tensor]) -> dict:
    """The ViTConfig flags a state dict implies: a ``--global_pool`` MAE has ``fc_norm`` and no ``norm``."""
    return {"final_norm": "norm.weight" in sd or "fc_norm.weight" not in sd, "fc_norm": "fc_norm.weight" in sd}


class ViTEncoder(Encoder):
    """A frozen ViT: the authors' read-out (``cls`` / ``global_pool``), or patch tokens of block ``layer``
    (default: last, after the final norm) under a trainable attention/average pool."""

    kind = "vit"

    def __init__(self, name: str, config: ViTConfig, layer: int | None = None, pooling: str = "attention"):
        if pooling == "authors":
            pooling = "global_pool" if config.fc_norm else AUTHORS_READOUT.get(name, "cls")
        if pooling == "global_pool" and not config.fc_norm:  # MAE / VC-1 give a fresh fc_norm to a pre-training checkpoint
            config = replace(config, fc_norm=True)
        super().__init__(name, pooling)
        self.backbone = ViT(config)
        self.token_dim, self.num_layers, self.input_size = config.embed_dim, config.depth, config.img_size
        self.layer = config.depth if layer is None else int(layer)
        if not 1 <= self.layer <= config.depth:
            raise ConfigError(f"{name}: layer {self.layer} outside 1..{config.depth}")
        if pooling == "global_pool" and self.layer != config.depth:
            raise ConfigError(f"{name}: pooling global_pool reads the last block (layer {config.depth}), not layer {self.layer}")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.token_grid = self.backbone.grid
        self.token_readout = pooling if pooling in READOUT_POOLINGS else "patch"
        self._init_pool()

    def _init_pool(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        self.pool = ReadoutPool(self.token_dim) if self.token_readout != "patch" else build_pool(self.pooling, self.token_dim, self.token_grid)

    def _model_input(self, frames):
        video = frames.ndim == 5
        flat = frames.flatten(0, 1) if video else frames  # (B*T, H, W, 3)
        return (vit_input(flat, self.backbone.config, self.device) - self.mean) / self.std  # (B*T, 3, S, S)

    def layer_tokens(self, frames, layers):
        B = frames.shape[0]
        out = self.backbone.forward_layers(self._model_input(frames), layers)
        return {l: t.reshape(B, -1, t.shape[-1]) for l, t in out.items()}  # video: (B, T*N, C)

    def encode_tokens(self, frames) -> torch.Tensor:
        """Patch tokens [B, N, C] for the trainable pools; with a read-out pooling, one vector per frame [B, T, C]."""
        if self.token_readout == "patch":
            return super().encode_tokens(frames)
        frames = as_frames(frames)
        with torch.no_grad(), self.backbone_autocast():
            feats = self.backbone.readout(self._model_input(frames), self.token_readout, self.layer).float()  # (B*T, C)
        return feats.reshape(frames.shape[0], -1, feats.shape[-1])

    def spec(self):
        return asdict(self.backbone.config)

    @classmethod
    def from_spec(cls, name, spec, pooling, layer=None):
        return cls(name, ViTConfig(**spec), layer=layer, pooling=pooling)

    def load_backbone(self, path: str | Path) -> "ViTEncoder":
        return self.load_backbone_state(load_vit_state_dict(path), str(path))

    def load_backbone_state(self, sd: dict[str, torch.Tensor], source: str) -> "ViTEncoder":
        sd = dict(sd)
        cfg = self.backbone.config
        if "pos_embed" in sd and not cfg.pos_embed:
            sd["pos_embed"] = torch.zeros_like(self.backbone.pos_embed)
        elif "pos_embed" in sd:
            sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], self.backbone.grid, self.name, cfg.patch_size)
        if cfg.fc_norm and "fc_norm.weight" not in sd:  # global pooling on a pre-training checkpoint: fresh LayerNorm
            sd["fc_norm.weight"], sd["fc_norm.bias"] = torch.ones(cfg.embed_dim), torch.zeros(cfg.embed_dim)
        if not cfg.final_norm:
            sd = {k: v for k, v in sd.items() if not k.startswith("norm.")}
        hint = (" (a --global_pool checkpoint has fc_norm: build it with build_vit_encoder, which reads its layout)"
                if "fc_norm.weight" in sd and not cfg.fc_norm else " (a checkpoint of another ViT size?)")
        check_state_dict(self.backbone.state_dict(), sd, source, what=self.name, hint=hint)
        self.backbone.load_state_dict(sd)
        return self


def build_vit_encoder(name: str, checkpoint: str | None = None, layer: int | None = None, pooling: str = "attention",
                      **overrides) -> ViTEncoder:
    """``mae_tiny``/``mae_vit_b``/``mae_vit_l``/``mvp_vit_s``/``mvp_vit_b``/``mvp_vit_l``/``vc1_vit_b``/``vc1_vit_l``;
    weights from ``checkpoint``; ``pooling="authors"`` gives the feature the model's authors use."""
    name = VIT_ALIASES.get(name, name)
    if name not in VIT_CONFIGS:
        raise UnknownNameError(f"unknown ViT encoder {name!r}; known: {', '.join([*VIT_CONFIGS, *VIT_ALIASES])}")
    bad = sorted(set(overrides) - set(ViTConfig.__dataclass_fields__))
    if bad:
        raise TypeError(f"{name}: unknown ViT option(s) {bad}; known: {', '.join(ViTConfig.__dataclass_fields__)}")
    sd = load_vit_state_dict(checkpoint) if checkpoint else None
    layout = checkpoint_layout(sd) if sd is not None else {}
    enc = ViTEncoder(name, ViTConfig(**{**VIT_CONFIGS[name], **layout, **overrides}), layer=layer, pooling=pooling)
    if sd is not None:
        enc.load_backbone_state(sd, str(checkpoint))
    return enc
