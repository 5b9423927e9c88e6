"""Toto: a LLaMA-style causal decoder over visual tokens (arXiv 2501.05453, Sec. 3.2).

Reads like nanoGPT's model.py: config dataclass, then RMSNorm -> RoPE -> attention -> SwiGLU MLP ->
block -> model, bottom-up, with shapes in comments. Shape legend: B batch, L sequence length,
D model width, H heads, Hkv key/value heads (grouped-query attention when < H), hd head dim,
F SwiGLU hidden width, V vocabulary (tokenizer codes + 4 special ids).

The train step is lean: one matmul for q, k and v (``attn.wqkv``, rows q | k | v) and one for the
SwiGLU gate and up projections (``mlp.w13``, rows gate | up), and the elementwise work (RMSNorm,
rotary embedding, SwiGLU) runs as fused autograd functions (``model/fused.py``). A CPU float32 train step runs causal
attention as blocked batched matmuls (``fused.causal_attention``; ``Attention.blocked = False``
switches it off), everything else uses torch's fused attention kernel. Checkpoints written
with separate ``wq/wk/wv`` and ``w1/w3`` weights load as they are (``convert_legacy_keys``).

`forward(idx, targets, return_layers)` returns logits, the loss, and the residual stream after the
requested blocks (0 = embeddings) from the same pass, which is what probes and frozen encoders read.
With `input_dim` set, the model reads continuous patch vectors instead of ids and regresses the
next patch (normalized-pixel MSE, the paper's patch-patch ablation).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from toto_robot.errors import UnknownNameError
from toto_robot.model.fused import causal_attention, qkv_rope, rms_norm, rope_tables, swiglu
from toto_robot.utils.config import ConfigError
from toto_robot.utils.io import CheckpointError, check_state_dict, load_pretrained, save_pretrained

ARCH = "toto"


@dataclass
class TotoConfig:
    vocab_size: int = 8192 + 4  # tokenizer codes + NUM_SPECIAL_TOKENS
    block_size: int = 4097  # positions the model reads: T*h*w + 1 (16 frames of 16x16 + start)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_kv_head: int = 0  # key/value heads for grouped-query attention; 0 = n_head (multi-head attention)
    mlp_hidden: int = 3072  # SwiGLU hidden width
    rope_base: float = 10_000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    dropout: float = 0.0
    input_dim: int = 0  # > 0: continuous patch tokens of this size in, regression head out
    tokens_per_frame: int = 256  # h*w, used for per-frame losses and frame-aware features
    name: str = "custom"

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if (self.n_embd // self.n_head) % 2:
            raise ConfigError("head dim must be even for rotary embeddings")
        if self.n_kv_head < 0 or (self.n_kv_head and self.n_head % self.n_kv_head):
            raise ConfigError(f"n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}")
        if self.input_dim < 0 or self.vocab_size <= 0 or self.block_size <= 1:
            raise ConfigError(f"bad TotoConfig sizes: {self}")

    @classmethod
    def from_name(cls, name: str, **overrides) -> "TotoConfig":
        if name not in CONFIGS:
            raise UnknownNameError(f"unknown Toto size {name!r}; known: {', '.join(CONFIGS)}")
        return replace(CONFIGS[name], **overrides)

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return {"arch": ARCH, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "TotoConfig":
        d = {k: v for k, v in d.items() if k != "arch"}
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise CheckpointError(f"unknown TotoConfig keys in checkpoint: {sorted(unknown)}")
        return cls(**d)


# Named sizes (paper Table 1); the tiny ones run the same code on a CPU.
CONFIGS: dict[str, TotoConfig] = {
    "toto_tiny": TotoConfig(n_layer=4, n_head=4, n_embd=128, mlp_hidden=512, block_size=1025, vocab_size=512 + 4, tokens_per_frame=64, name="toto_tiny"),
    "toto_small": TotoConfig(n_layer=6, n_head=8, n_embd=256, mlp_hidden=1024, block_size=1025, vocab_size=1024 + 4, tokens_per_frame=64, name="toto_small"),
    "toto_base": TotoConfig(n_layer=12, n_head=12, n_embd=768, mlp_hidden=3072, name="toto_base"),  # ~120M
    "toto_large": TotoConfig(n_layer=16, n_head=16, n_embd=1024, mlp_hidden=4096, name="toto_large"),  # ~280M
    "toto_1b": TotoConfig(n_layer=22, n_head=16, n_embd=2048, mlp_hidden=5632, name="toto_1b"),  # ~1.1B
}


class TotoOutput(NamedTuple):
    logits: torch.Tensor | None  # (B, L, V) or (B, L, input_dim) for patch regression
    loss: torch.Tensor | None
    hidden: dict[int, torch.Tensor]  # layer -> (B, L, D)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)  # F.rms_norm, with a fused backward on CPU


class KVCache:
    """Keys/values of every layer for incremental decoding."""

    def __init__(self):
        self.k: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}

    def length(self) -> int:
        return next(iter(self.k.values())).shape[2] if self.k else 0


class Attention(nn.Module):
    blocked = True  # CPU train steps use fused.causal_attention's blocked kernel (False: torch's kernel)

    def __init__(self, cfg: TotoConfig, layer: int):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim, self.layer = cfg.n_head, cfg.kv_heads, cfg.head_dim, layer
        self.wqkv = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim, bias=False)  # rows q | k | v
        self.wo = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x, cos, sin, cache: KVCache | None = None):
        B, L, D = x.shape
        # q: (B, H, L, hd); k, v: (B, Hkv, L, hd); q and k rotated by RoPE
        q, k, v = qkv_rope(self.wqkv(x), cos, sin, self.n_head, self.n_kv_head)
        gqa = self.n_kv_head != self.n_head
        causal = True
        if cache is not None:
            if self.layer in cache.k:
                k = torch.cat([cache.k[self.layer], k], dim=2)  # (B, H, past+L, hd)
                v = torch.cat([cache.v[self.layer], v], dim=2)
                causal = L > 1  # a single new query attends to everything cached
            cache.k[self.layer], cache.v[self.layer] = k, v
        if cache is None and not (self.dropout and self.training):  # a whole sequence: the train step, features
            y = causal_attention(q, k, v, self.blocked)  # (B, H, L, hd); blocked kernel in a CPU train step
        elif causal and k.shape[2] != L:  # several new queries after a cached prefix
            mask = torch.ones(L, k.shape[2], dtype=torch.bool, device=x.device).tril(k.shape[2] - L)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=self.dropout if self.training else 0.0, enable_gqa=gqa)
        return self.wo(y.transpose(1, 2).reshape(B, L, D))  # (B, L, D)


class SwiGLU(nn.Module):
    def __init__(self, cfg: TotoConfig):
        super().__init__()
        self.w13 = nn.Linear(cfg.n_embd, 2 * cfg.mlp_hidden, bias=False)  # rows gate (LLaMA's w1) | up (w3)
        self.w2 = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=False)  # down

    def forward(self, x):
        return self.w2(swiglu(self.w13(x)))  # (B, L, 2F) -> (B, L, F) -> (B, L, D)


class Block(nn.Module):
    def __init__(self, cfg: TotoConfig, layer: int):
        super().__init__()
        self.norm1 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg, layer)
        self.norm2 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, cos, sin, cache=None):
        x = x + self.attn(self.norm1(x), cos, sin, cache)
        return x + self.mlp(self.norm2(x))


class Toto(nn.Module):
    def __init__(self, config: TotoConfig):
        super().__init__()
        self.config = cfg = config
        if cfg.input_dim:
            self.tok_emb = nn.Linear(cfg.input_dim, cfg.n_embd)  # continuous patch vectors in
            self.start_emb = nn.Parameter(torch.zeros(cfg.n_embd))
        else:
            self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        out_dim = cfg.input_dim or cfg.vocab_size
        self.head = nn.Linear(cfg.n_embd, out_dim, bias=False)
        if cfg.tie_embeddings and not cfg.input_dim:
            self.head.weight = self.tok_emb.weight
        cos, sin = rope_tables(cfg.block_size, cfg.head_dim, cfg.rope_base)  # (block_size, hd/2)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # scaled init of residual projections (GPT-2/LLaMA)
            if name.endswith("attn.wo.weight") or name.endswith("mlp.w2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and not self.config.input_dim:
            n -= self.tok_emb.weight.numel()
        return n

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.input_dim:
            if idx.ndim != 3 or idx.shape[-1] != cfg.input_dim:
                raise ValueError(f"patch-token model expects float input (B, L, {cfg.input_dim}), got {tuple(idx.shape)}")
            x = self.tok_emb(idx)  # (B, L, D)
            x = torch.cat([self.start_emb.expand(x.shape[0], 1, -1), x[:, :-1]], dim=1)  # shift right: predict patch t from < t
            return x
        if idx.ndim != 2 or idx.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"Toto expects integer token ids (B, L), got {idx.dtype} {tuple(idx.shape)}")
        if idx.numel() and (int(idx.max()) >= cfg.vocab_size or int(idx.min()) < 0):
            raise ValueError(f"token id {int(idx.max())} out of range for a vocabulary of {cfg.vocab_size} (tokenizer/model vocab mismatch?)")
        return self.tok_emb(idx)  # (B, L, D)

    def forward(self, idx, targets=None, return_layers=None, cache: KVCache | None = None, last_only: bool = False) -> TotoOutput:
        cfg = self.config
        L = idx.shape[1]
        start = cache.length() if cache is not None else 0
        if start + L > cfg.block_size:
            raise ValueError(f"sequence of {start + L} positions exceeds the model's context of {cfg.block_size}")
        wanted = set(return_layers or ())
        bad = [l for l in wanted if not 0 <= l <= cfg.n_layer]
        if bad:
            raise ValueError(f"return_layers {bad} outside 0..{cfg.n_layer}")
        cos, sin = self.rope_cos[start:start + L], self.rope_sin[start:start + L]
        x = self.embed(idx)  # (B, L, D)
        hidden = {0: x} if 0 in wanted else {}
        deepest = max(wanted) if (self._probe_only and wanted) else cfg.n_layer
        recompute = self.checkpoint_blocks and cache is None and torch.is_grad_enabled()
        for i, block in enumerate(self.layers[:deepest], start=1):
            if recompute:  # activation checkpointing: keep only each block's input, recompute it in backward
                x = checkpoint(block, x, cos, sin, use_reentrant=False)
            else:
                x = block(x, cos, sin, cache)
            if i in wanted:
                hidden[i] = x
        if deepest < cfg.n_layer:  # features only: no need to run the top of the stack
            return TotoOutput(None, None, hidden)
        x = self.norm(x)
        if last_only:
            x = x[:, -1:]
        out = self.head(x)  # (B, L, V) or (B, L, input_dim)
        loss = None
        if targets is not None:
            if cfg.input_dim:
                loss = F.mse_loss(out.float(), targets.float())
            else:
                loss = F.cross_entropy(out.float().reshape(-1, out.shape[-1]), targets.reshape(-1), ignore_index=-1)
        return TotoOutput(out, loss, hidden)

    # Feature extraction may stop at the deepest requested layer (frozen encoders, probes).
    _probe_only = False
    # Activation checkpointing of every block in training (the trainer's activation_checkpointing).
    checkpoint_blocks = False

    def features(self, idx: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
        """Residual stream after each of ``layers`` without running blocks above the deepest one."""
        self._probe_only = True
        try:
            return self.forward(idx, return_layers=layers).hidden
        finally:
            self._probe_only = False

    def per_position_loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, L) loss of every position (cross-entropy; squared error averaged over the patch for a
        patch-regression model); the trainer folds it into per-frame losses."""
        out = self.forward(idx).logits
        if self.config.input_dim:
            return (out.float() - targets.float()).pow(2).mean(-1)
        return F.cross_entropy(out.float().transpose(1, 2), targets, reduction="none", ignore_index=-1)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample continuations with a KV cache: (B, L) -> (B, L + max_new_tokens)."""
        if self.config.input_dim:
            raise ValueError("generate() samples discrete tokens; this is a patch-regression model")
        if idx.shape[1] + max_new_tokens > self.config.block_size:
            raise ValueError(f"{idx.shape[1]} + {max_new_tokens} tokens exceed the context of {self.config.block_size}")
        cache = KVCache()
        logits = self.forward(idx, cache=cache, last_only=True).logits
        out = [idx]
        for _ in range(max_new_tokens):
            logits = logits[:, -1].float() / max(temperature, 1e-6)  # (B, V)
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)
            out.append(nxt)
            logits = self.forward(nxt, cache=cache, last_only=True).logits
        return torch.cat(out, dim=1)

    def configure_optimizer(self, lr: float, weight_decay: float, betas=(0.9, 0.95), fused: bool | None = None):
        """AdamW with weight decay on matrices only (no decay on norms, biases)."""
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        decay = [p for p in params.values() if p.dim() >= 2]
        no_decay = [p for p in params.values() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)

    # ---- persistence ----
    def save_pretrained(self, directory: str | Path) -> Path:
        sd = {k: v for k, v in self.state_dict().items() if not (self.config.tie_embeddings and k == "head.weight" and not self.config.input_dim)}
        return save_pretrained(directory, sd, self.config.to_dict())

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu", **overrides) -> "Toto":
        sd, cfg = load_pretrained(directory, map_location)
        if cfg.get("arch", ARCH) != ARCH:
            raise CheckpointError(f"{directory} holds a {cfg.get('arch')!r} model, not {ARCH!r}")
        model = cls(replace(TotoConfig.from_dict(cfg), **overrides))
        model.load_weights(sd, source=str(directory))
        return model

    def load_weights(self, sd: dict[str, torch.Tensor], source: str) -> None:
        sd = convert_legacy_keys(sd)
        own = self.state_dict()
        if self.config.tie_embeddings and not self.config.input_dim:
            own.pop("head.weight")
            sd = {k: v for k, v in sd.items() if k != "head.weight"}
        check_state_dict(own, sd, source)
        self.load_state_dict(sd, strict=False)


# Checkpoints written before q/k/v and gate/up were fused hold one matrix per projection.
LEGACY_FUSED = {"attn.wqkv.weight": ("attn.wq.weight", "attn.wk.weight", "attn.wv.weight"),
                "mlp.w13.weight": ("mlp.w1.weight", "mlp.w3.weight")}


def convert_legacy_keys(sd: dict) -> dict:
    """A state dict with separate ``attn.wq/wk/wv`` and ``mlp.w1/w3`` weights -> the fused layout
    (rows stacked in that order); a state dict already fused is returned unchanged. Works for any
    per-parameter values that stack along dim 0 (weights, AdamW moments)."""
    if not any(k.endswith(LEGACY_FUSED["attn.wqkv.weight"][0]) or k.endswith(LEGACY_FUSED["mlp.w13.weight"][0]) for k in sd):
        return sd
    out = dict(sd)
    for key in sd:
        for fused, parts in LEGACY_FUSED.items():
            if key.endswith(parts[0]):
                prefix = key[: -len(parts[0])]
                names = [prefix + p for p in parts]
                missing = [n for n in names if n not in sd]
                if missing:
                    raise CheckpointError(f"checkpoint has {key} but not {missing}: cannot build {prefix + fused}")
                out[prefix + fused] = torch.cat([sd[n] for n in names], dim=0)
                for n in names:
                    del out[n]
    return out
