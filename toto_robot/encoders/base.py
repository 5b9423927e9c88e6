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

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class FrameFormatError(ValueError):
    """Frames passed to an encoder or tokenizer have the wrong type, shape, dtype or channel count."""


def as_frames(frames, *, allow_video: bool = True) -> torch.Tensor:
    """Validate raw frames and return a uint8 tensor [B,H,W,3] or [B,T,H,W,3] (numpy accepted)."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
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


class AveragePool(nn.Module):
    """Mean over tokens: [B, N, C] -> [B, C]."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.mean(dim=1)


class AttentionPool(nn.Module):
    """One learned query cross-attends to the tokens (Toto Sec. 3.5): softmax(q W_k^T x) W_v x.

    Multi-head; a LayerNorm on the input tokens keeps the frozen features' scale from
    dominating the learning rate. [B, N, C] -> [B, C].
    """

    def __init__(self, dim: int, num_heads: int = 8):
        super().__init__()
        while dim % num_heads:
            num_heads //= 2
        self.dim, self.num_heads = dim, num_heads
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, N, C = tokens.shape
        h = self.num_heads
        x = self.norm(tokens)
        q = self.query.expand(B, -1, -1).reshape(B, 1, h, C // h).transpose(1, 2)  # (B, h, 1, hs)
        k = self.k(x).reshape(B, N, h, C // h).transpose(1, 2)  # (B, h, N, hs)
        v = self.v(x).reshape(B, N, h, C // h).transpose(1, 2)  # (B, h, N, hs)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, 1, hs)
        return out.transpose(1, 2).reshape(B, C)


def build_pool(kind: str, dim: int) -> nn.Module:
    if kind == "attention":
        return AttentionPool(dim)
    if kind == "average":
        return AveragePool(dim)
    raise ValueError(f"unknown pooling {kind!r}: expected 'attention' or 'average'")


class Encoder(nn.Module, ABC):
    """Frozen backbone + trainable pooling. Subclasses set ``token_dim``/``input_size`` and implement
    ``_tokens(x)`` on preprocessed float input [B, 3, S, S] -> [B, N, token_dim]."""

    name: str = "encoder"
    token_dim: int
    input_size: int

    def __init__(self, pooling: str = "attention"):
        super().__init__()
        self.pooling = pooling

    def _init_pool(self) -> None:
        """Call at the end of a subclass ``__init__``: freezes the backbone, builds the trainable pool."""
        for p in self.parameters():
            p.requires_grad_(False)
        self.pool = build_pool(self.pooling, self.token_dim)

    @property
    def feature_dim(self) -> int:
        return self.token_dim

    @property
    def device(self) -> torch.device:
        return next(self.buffers(), next(self.parameters())).device

    def backbone_parameters(self):
        return (p for n, p in self.named_parameters() if not n.startswith("pool."))

    def train(self, mode: bool = True):
        """The frozen backbone always stays in eval mode; only the pool follows ``mode``."""
        super().train(False)
        self.pool.train(mode)
        return self

    @abstractmethod
    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """float [B, 3, S, S] in [0, 1] -> per-token features [B, N, token_dim]."""

    def encode_tokens(self, frames) -> torch.Tensor:
        """uint8 [B,H,W,3] or [B,T,H,W,3] -> frozen token features [B, N, token_dim] (video: tokens of all frames)."""
        frames = as_frames(frames)
        video = frames.ndim == 5
        B = frames.shape[0]
        flat = frames.flatten(0, 1) if video else frames  # (B*T, H, W, 3)
        x = to_model_input(flat, self.input_size, self.device)
        with torch.no_grad():
            tok = self._tokens(x)  # (B*T, N, C)
        if video:
            tok = tok.reshape(B, -1, tok.shape[-1])  # (B, T*N, C)
        return tok

    def forward(self, frames) -> torch.Tensor:
        return self.pool(self.encode_tokens(frames))
