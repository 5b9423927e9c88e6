"""GPT-2-style decoder for the architecture ablation (paper Table 6): LayerNorm, GELU MLP, learned
absolute positions. Same forward contract as ``Toto`` so trainers, probes and encoders accept it."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from toto_robot.model.toto import TotoOutput


@dataclass
class GPT2Config:
    vocab_size: int = 512 + 4
    block_size: int = 1025
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    tokens_per_frame: int = 64
    input_dim: int = 0  # kept for interface parity with TotoConfig (discrete only)
    name: str = "gpt2_tiny"

    def to_dict(self) -> dict:
        return {"arch": "gpt2", **asdict(self)}


class GPT2Block(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.fc_out = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.n_head = cfg.n_head

    def forward(self, x):
        B, L, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.n_head, D // self.n_head).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, hd)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, L, D)
        x = x + self.proj(y)
        return x + self.fc_out(F.gelu(self.fc(self.ln2(x))))


class GPT2(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.layers = nn.ModuleList(GPT2Block(config) for _ in range(config.n_layer))
        self.norm = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, idx, targets=None, return_layers=None) -> TotoOutput:
        B, L = idx.shape
        if L > self.config.block_size:
            raise ValueError(f"sequence of {L} positions exceeds the model's context of {self.config.block_size}")
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(L, device=idx.device))  # (B, L, D)
        wanted = set(return_layers or ())
        hidden = {0: x} if 0 in wanted else {}
        for i, block in enumerate(self.layers, start=1):
            x = block(x)
            if i in wanted:
                hidden[i] = x
        logits = self.head(self.norm(x))  # (B, L, V)
        loss = None if targets is None else F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        return TotoOutput(logits, loss, hidden)

    def configure_optimizer(self, lr: float, weight_decay: float, betas=(0.9, 0.95), fused=None):
        decay = [p for p in self.parameters() if p.dim() >= 2]
        rest = [p for p in self.parameters() if p.dim() < 2]
        return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=lr, betas=betas, fused=fused)
