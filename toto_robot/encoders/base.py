"""The encoder interface every backbone implements, plus the two poolings of the Toto paper (Sec. 3.5).

    enc = build_encoder(...)                       # see registry.py
    feats = enc(frames)                            # frames: uint8 [B,H,W,3] or [B,T,H,W,3] -> [B, feature_dim]
    tokens = enc.encode_tokens(frames)             # frozen per-token features [B, N, token_dim]

Frozen/trainable split: the backbone (tokenizer + transformer, or ViT) is frozen; the pooling
module (``enc.pool``) holds the only trainable parameters and is trained together with the
probe or policy that consumes the features. Callers pass raw uint8 RGB; resizing, cropping
and normalisation happen inside the encoder.
"""
from __future__ import annotations

import contextlib
import math

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from toto_robot.errors import UserError
from toto_robot.utils.config import ConfigError
from toto_robot.utils.io import atomic_save_json, check_state_dict, save_pretrained

ENCODER_CONFIG = "encoder.json"


class FrameFormatError(UserError, ValueError):
    """Frames passed to an encoder or tokenizer have the wrong type, shape, dtype or channel count."""


def as_frames(frames, *, allow_video: bool = True) -> torch.Tensor:
    """Validate raw frames and return a uint8 tensor [B,H,W,3] or [B,T,H,W,3] (numpy accepted)."""
    if isinstance(frames, np.ndarray):
        frames = np.ascontiguousarray(frames)
        frames = torch.from_numpy(frames if frames.flags.writeable else frames.copy())  # ROS buffers are read-only
    if not isinstance(frames, torch.Tensor):
        raise FrameFormatError(f"frames must be a uint8 numpy array or torch tensor, got {type(frames).__name__}")
    if frames.dtype != torch.uint8:
        raise FrameFormatError(f"frames must be uint8 RGB in [0, 255], got dtype {frames.dtype}")
    ranks = (4, 5) if allow_video else (4,)
    if frames.ndim not in ranks:
        want = "[B,H,W,3] or [B,T,H,W,3]" if allow_video else "[B,H,W,3]"
        raise FrameFormatError(f"frames must be {want} (channels last), got shape {tuple(frames.shape)}")
    if frames.shape[-1] != 3:
        hint = " (looks channels-first: permute to channels-last)" if frames.shape[-3] == 3 else ""
        raise FrameFormatError(f"frames must have 3 RGB channels last, got shape {tuple(frames.shape)}{hint}")
    if frames.shape[0] == 0 or (frames.ndim == 5 and frames.shape[1] == 0):
        raise FrameFormatError(f"frames hold no images: shape {tuple(frames.shape)}; pass a batch of at least one frame")
    if frames.shape[-2] == 0 or frames.shape[-3] == 0:
        raise FrameFormatError(f"frames have zero size: {tuple(frames.shape)}")
    return frames


def to_model_input(frames_u8: torch.Tensor, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [B,H,W,3] -> float [B,3,size,size] in [0,1]: centre square crop, then antialiased resize."""
    x = frames_u8.to(device).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
    H, W = x.shape[-2:]
    s = min(H, W)
    top, left = (H - s) // 2, (W - s) // 2
    x = x[..., top:top + s, left:left + s]
    if s != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def resize_frames_u8(frames_u8: torch.Tensor, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [B,H,W,3] -> uint8 [B,size,size,3]: ``to_model_input``'s crop and resize, kept as 8-bit frames
    (what tokenizers and stored demonstrations take)."""
    x = to_model_input(frames_u8, size, device)  # (B, 3, size, size) in [0, 1]
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


class AveragePool(nn.Module):
    """Mean over tokens: [B, N, C] -> [B, C]."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.mean(dim=1)


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos position code of each cell of a ``grid x grid`` raster: [grid*grid, dim]."""
    def one_axis(d, pos):
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        out = pos.reshape(-1, 1).double() * omega[None]  # (M, d/2)
        return torch.cat([out.sin(), out.cos()], dim=1)

    gh, gw = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([one_axis(dim // 2, gw), one_axis(dim // 2, gh)], dim=1).float()  # (grid*grid, dim)


def frame_grid(n: int, grid: int | None, pooling: str) -> int:
    """Side of the square token raster that ``n`` tokens fill in whole frames (``grid=None``: n is one frame)."""
    g = grid or math.isqrt(n)
    if not g or n % (g * g):
        raise ValueError(f"{pooling} pooling: {n} tokens are not whole frames of a {g} x {g} token grid")
    return g


class AttentionPool(nn.Module):
    """One learned query cross-attends to the tokens (Toto Sec. 3.5): softmax(q W_k^T x) W_v x.

    Multi-head; a LayerNorm on the input tokens keeps the frozen features' scale from
    dominating the learning rate. [B, N, C] -> [B, C].

    ``positions=True`` (pooling ``spatial_attention``): a fixed 2-D sin-cos code of each token's cell
    on the frame's ``grid x grid`` token raster is added to the keys and values, so the pooled vector
    says *where* the attended tokens are, not only what they are. Control needs the where; a RoPE
    decoder encodes only relative positions, so its tokens carry little of it. Video tokens (T frames
    in raster order) get the same code per frame. ``grid=None`` reads it from N (a square).
    """

    def __init__(self, dim: int, num_heads: int = 8, positions: bool = False, grid: int | None = None):
        super().__init__()
        while dim % num_heads:
            num_heads //= 2
        self.dim, self.num_heads, self.positions, self.grid = dim, num_heads, positions, grid
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self._codes: dict[tuple[int, str], torch.Tensor] = {}

    def position_codes(self, n: int, device: torch.device) -> torch.Tensor:
        """[n, dim] codes for n tokens: whole frames of the token grid."""
        g = frame_grid(n, self.grid, "spatial_attention")
        key = (n, str(device))
        if key not in self._codes:
            self._codes[key] = sincos_2d(self.dim, g).repeat(n // (g * g), 1).to(device)
        return self._codes[key]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The single query lets the projections move off the tokens: q.(W_k x + b_k) = (W_k^T q).x + const
        (the constant shifts every score of a head alike and cancels in the softmax, so ``k.bias``, kept
        for checkpoints, gets no gradient) and sum_n a_n (W_v x_n + b_v) = W_v (sum_n a_n x_n) + b_v
        (the weights sum to 1). Same function as projecting every token's key and value, at h/C of the
        cost: the projections run once per head on the mixed token, not on N tokens."""
        B, N, C = tokens.shape
        h, hs = self.num_heads, C // self.num_heads
        x = self.norm(tokens)
        if self.positions:
            x = x + self.position_codes(N, x.device)  # (B, N, C) + (N, C)
        q = self.query.reshape(h, 1, hs)  # (h, 1, hs)
        qk = (q @ self.k.weight.reshape(h, hs, C)).squeeze(1) * hs ** -0.5  # (h, C): each head's query in token space
        attn = (x @ qk.t()).softmax(dim=1)  # (B, N, h), over tokens
        mixed = attn.transpose(1, 2) @ x  # (B, h, C): each head's attention-weighted token
        w_v = self.v.weight.reshape(h, hs, C)
        out = (mixed.unsqueeze(-2) @ w_v.transpose(1, 2).unsqueeze(0)).squeeze(-2)  # (B, h, 1, C) @ (1, h, C, hs) -> (B, h, hs)
        return out.reshape(B, C) + self.v.bias  # (B, C)


class RunningStandardize(nn.Module):
    """Per-feature standardisation by running statistics: (x - mean) / std, the same function in
    training and evaluation. Training-mode forwards with gradients enabled update the statistics from
    their batch first (no gradient flows through them): an exact average over the first batches, then an
    exponential one with weight ``momentum``, so the statistics follow features that are still being
    learned. Saved with the module (buffers). [..., D] -> [..., D]."""

    def __init__(self, dim: int, momentum: float = 0.01, eps: float = 1e-10):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))  # samples seen

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).to(self.mean.dtype)
        n = x.shape[0]
        w = max(n / float(self.count + n), self.momentum)
        mean, var = x.mean(0), x.var(0, unbiased=False)
        delta = mean - self.mean
        self.mean += w * delta
        self.var.mul_(1 - w).add_(w * var + w * (1 - w) * delta * delta)  # mixture of the two distributions
        self.count += n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.update(x)
        return (x - self.mean) * torch.rsqrt(self.var + self.eps)


class KeypointPool(nn.Module):
    """Spatial soft-argmax (robomimic's ``SpatialSoftmax``, Levine et al. 2016) over the token grid:
    a linear map scores every token for ``dim // 2`` keypoints, a softmax over the tokens (with a
    learned temperature) turns each keypoint's scores into weights, and the keypoint is the weighted
    mean of the tokens' (x, y) cell centres in [-1, 1]. [B, N, C] -> [B, C] = (x, y) of C/2 keypoints,
    standardised by running statistics (``RunningStandardize``).

    The output is nothing but positions, so a policy reads *where* things are from the first update.
    The positions carry it before any training: on 800 Franka-reach frames, a ridge regression from the
    untrained pool's keypoints over frozen Toto-tiny tokens put the target within 4 cm of the truth in 98%
    of held-out frames. But LayerNorm-ed tokens score within a narrow range, so the softmax starts near
    uniform and every keypoint sits within about 0.001 of its mean: to a policy MLP at its usual
    initialisation that is a constant, and PPO spent tens of thousands of steps scaling it up. Hence the
    standardisation. Video tokens (T frames in raster order) share the softmax over all T x grid x grid cells.
    """

    def __init__(self, dim: int, grid: int | None = None):
        super().__init__()
        if dim % 2:
            raise ValueError(f"keypoints pooling needs an even token dim, got {dim}")
        self.dim, self.grid = dim, grid
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, dim // 2)
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.standardize = RunningStandardize(dim)
        self._cells: dict[tuple[int, str], torch.Tensor] = {}

    def cell_centres(self, n: int, device: torch.device) -> torch.Tensor:
        """[n, 2] (x, y) in [-1, 1] of each token's cell, for whole frames of the token grid."""
        g = frame_grid(n, self.grid, "keypoints")
        key = (n, str(device))
        if key not in self._cells:
            c = torch.linspace(-1.0, 1.0, g) if g > 1 else torch.zeros(1)
            ys, xs = torch.meshgrid(c, c, indexing="ij")
            self._cells[key] = torch.stack([xs.flatten(), ys.flatten()], dim=1).repeat(n // (g * g), 1).to(device)
        return self._cells[key]

    def keypoints(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, N, C] -> [B, C/2, 2]: each keypoint's (x, y) in [-1, 1], before standardisation."""
        weights = (self.score(self.norm(tokens)) * self.log_temperature.exp()).softmax(dim=1)  # (B, N, K), over tokens
        return weights.transpose(1, 2) @ self.cell_centres(tokens.shape[1], tokens.device)  # (B, K, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, N, C = tokens.shape
        return self.standardize(self.keypoints(tokens).reshape(B, C))  # (B, C)


class GridPool(nn.Module):
    """The token grid kept as a grid: each token is projected to ``channels`` numbers, the grid is flattened
    in raster order and a linear map reads the result, [B, N, C] -> [B, C]. Every cell has its own weights,
    so the pooled vector says what is in which cell, and the policy can interpolate between neighbouring cells
    to place an object finer than a token (the flattened conv features of DrQ and of ACT's ResNet read-out do
    the same). Video tokens (T frames in raster order) are averaged over the T frames first."""

    def __init__(self, dim: int, grid: int | None = None, channels: int = 8):
        super().__init__()
        if not grid:
            raise ValueError("grid pooling needs the encoder's token grid")
        self.dim, self.grid, self.channels = dim, grid, channels
        self.norm = nn.LayerNorm(dim)
        self.reduce = nn.Linear(dim, channels)
        self.read = nn.Linear(grid * grid * channels, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, N, C = tokens.shape
        cells = frame_grid(N, self.grid, "grid") ** 2
        x = self.reduce(self.norm(tokens)).reshape(B, N // cells, cells, self.channels).mean(dim=1)  # (B, g*g, channels)
        return self.read(x.flatten(1))  # (B, C)


class ReadoutPool(nn.Module):
    """No parameters: the encoder already read out one vector per frame (a ViT's class token, or MAE's
    normed mean token), [B, T, C]; one frame passes through unchanged, a clip's frames are averaged."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.mean(dim=1)


# The arithmetic of the frozen backbone: float32 (exact), or bfloat16 matmuls under torch.autocast (tokens still come
# out float32). On a CPU with AVX-512 BF16 a linear layer runs about 5x faster in bfloat16; the tokens move by about
# 0.3% of their norm (benchmarks/bench_readout.py measures both on the real-camera read-out).
PRECISIONS = ("float32", "bfloat16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


POOLINGS = ("attention", "average", "spatial_attention", "keypoints", "grid")
# read-outs a ViT's authors use as its feature (encoders.vit): the final-norm class token (MVP, VC-1, MAE
# pre-training) and MAE's ``--global_pool`` (fc_norm of the mean patch token); "authors" picks the model's own.
READOUT_POOLINGS = ("cls", "global_pool")


def build_pool(kind: str, dim: int, grid: int | None = None) -> nn.Module:
    if kind == "attention":
        return AttentionPool(dim)
    if kind == "spatial_attention":
        return AttentionPool(dim, positions=True, grid=grid)
    if kind == "average":
        return AveragePool(dim)
    if kind == "keypoints":
        return KeypointPool(dim, grid=grid)
    if kind == "grid":
        return GridPool(dim, grid=grid)
    if kind in (*READOUT_POOLINGS, "authors"):
        raise ConfigError(f"pooling {kind!r} reads out a ViT's class token or fc_norm; this encoder has none: "
                         f"choose one of {', '.join(POOLINGS)}")
    raise ConfigError(f"unknown pooling {kind!r}: expected one of {', '.join(POOLINGS)} "
                     f"(ViT baselines also: {', '.join(READOUT_POOLINGS)}, authors)")


class Encoder(nn.Module, ABC):
    """Frozen backbone + trainable pooling.

    Subclasses set ``token_dim``, ``num_layers`` and ``layer`` (the block whose output is the
    feature, 1-based; 0 = embeddings), implement ``layer_tokens`` and ``spec`` (a JSON dict from
    which ``from_spec`` rebuilds the architecture without any file), and call ``_init_pool()``
    at the end of ``__init__``.
    """

    kind: str = "encoder"
    token_grid: int | None = None  # tokens of one frame form a token_grid x token_grid raster
    token_readout: str = "patch"  # what encode_tokens returns: patch tokens, or one read-out vector per frame ("cls", ...)
    token_dim: int
    num_layers: int
    layer: int
    precision: str = "float32"  # the backbone's arithmetic (PRECISIONS); set_precision changes it

    def __init__(self, name: str, pooling: str = "attention"):
        super().__init__()
        self.name, self.pooling = name, pooling

    def set_precision(self, precision: str) -> "Encoder":
        """Run the frozen backbone in ``precision`` (``PRECISIONS``); the pool and the returned tokens stay float32."""
        self.precision = check_precision(precision)
        return self

    def backbone_autocast(self):
        """The context the backbone runs in: bfloat16 autocast, or nothing for float32."""
        if self.precision == "bfloat16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _init_pool(self) -> None:
        """Freeze the backbone and build the trainable pool."""
        for p in self.parameters():
            p.requires_grad_(False)
        self.pool = build_pool(self.pooling, self.token_dim, grid=self.token_grid)

    @property
    def feature_dim(self) -> int:
        return self.token_dim

    @staticmethod
    def from_config(name: str, **kwargs) -> "Encoder":
        """``Encoder.from_config("toto_base", checkpoint=..., layer=6)``: same as ``build_encoder``."""
        from toto_robot.encoders.registry import build_encoder

        return build_encoder(name, **kwargs)

    @staticmethod
    def from_pretrained(directory: str | Path, map_location: str = "cpu") -> "Encoder":
        """Reload a folder written by ``save_pretrained``: same as ``load_encoder``."""
        from toto_robot.encoders.registry import load_encoder

        return load_encoder(directory, map_location)

    @property
    def device(self) -> torch.device:
        return next(self.pool.parameters(), next(self.parameters())).device

    def backbone_parameters(self):
        return (p for n, p in self.named_parameters() if not n.startswith("pool."))

    def train(self, mode: bool = True):
        """The frozen backbone always stays in eval mode; only the pool follows ``mode``."""
        super().train(False)
        self.pool.train(mode)
        return self

    @abstractmethod
    def layer_tokens(self, frames: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
        """Validated uint8 frames [B,H,W,3] or [B,T,H,W,3] -> {layer: frozen tokens [B, N, token_dim]} from one pass."""

    @abstractmethod
    def spec(self) -> dict:
        """Everything ``from_spec`` needs to rebuild this architecture (JSON-serialisable)."""

    @classmethod
    @abstractmethod
    def from_spec(cls, name: str, spec: dict, pooling: str) -> "Encoder":
        ...

    def hidden_states(self, frames, layers: list[int] | None = None) -> dict[int, torch.Tensor]:
        """Frozen tokens of several layers (default: all) for probing: {layer: [B, N, token_dim]}."""
        layers = list(range(1, self.num_layers + 1)) if layers is None else list(layers)
        bad = [l for l in layers if not 0 <= l <= self.num_layers]
        if bad:
            raise ConfigError(f"{self.name}: layers {bad} outside 0..{self.num_layers}")
        with torch.no_grad(), self.backbone_autocast():
            hidden = self.layer_tokens(as_frames(frames), layers)
        return {l: h.float() for l, h in hidden.items()} if self.precision != "float32" else hidden

    def encode_tokens(self, frames) -> torch.Tensor:
        """uint8 [B,H,W,3] or [B,T,H,W,3] -> frozen token features [B, N, token_dim] at ``self.layer``."""
        return self.hidden_states(frames, [self.layer])[self.layer]

    def forward(self, frames) -> torch.Tensor:
        return self.pool(self.encode_tokens(frames))  # (B, feature_dim)

    # ---- persistence: config + weights (backbone and pool) in one folder ----
    def save_pretrained(self, directory: str | Path) -> Path:
        sd, tied, seen = {}, {}, {}
        for k, v in self.state_dict().items():
            key = (v.data_ptr(), tuple(v.shape), v.dtype)
            if v.numel() and key in seen:  # tied weights: safetensors stores shared storage once
                tied[k] = seen[key]
                continue
            seen[key] = k
            sd[k] = v.detach().contiguous()
        config = {"encoder": self.kind, "name": self.name, "pooling": self.pooling, "layer": self.layer,
                  "spec": self.spec(), "tied": tied, "precision": self.precision}
        save_pretrained(directory, sd, config)
        atomic_save_json(config, Path(directory) / ENCODER_CONFIG)
        return Path(directory)

    def load_state(self, sd: dict[str, torch.Tensor], tied: dict[str, str], source: str) -> None:
        sd = dict(sd)
        for k, src in tied.items():
            if src in sd:
                sd[k] = sd[src]
        check_state_dict(self.state_dict(), sd, source, what="encoder")
        self.load_state_dict(sd)
