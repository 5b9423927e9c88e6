"""Continuous patch tokens (paper's patch-patch ablation): no codebook, pixels are the tokens.

``encode`` returns each ``p x p`` patch flattened to ``D = 3 p^2`` values in [-1, 1] (exactly
invertible by ``decode``); ``targets`` gives the normalized-patch regression targets (per-patch
mean/std normalization, as MAE's ``norm_pix_loss``) that a Toto with ``input_dim = D`` regresses.
"""
from __future__ import annotations

import torch
from einops import rearrange

from toto_robot.tokenizers.base import Tokenizer


class PatchTokenizer(Tokenizer):
    kind = "patch"
    is_discrete = False

    def __init__(self, patch_size: int = 8):
        super().__init__(vocab_size=0, downsample=patch_size)
        self.patch_size = patch_size
        self.token_dim = 3 * patch_size * patch_size

    def config(self) -> dict:
        return {"patch_size": self.patch_size}

    @torch.no_grad()
    def encode(self, frames):
        x = self.to_unit(self.check_frames(frames)) * 2 - 1
        return rearrange(x, "b c (h p) (w q) -> b h w (p q c)", p=self.patch_size, q=self.patch_size)  # (B, h, w, D)

    @torch.no_grad()
    def decode(self, codes):
        codes = self.check_codes(codes)
        if codes.shape[-1] != self.token_dim:
            raise ValueError(f"patch tokens must have {self.token_dim} values, got {codes.shape[-1]}")
        x = rearrange(codes, "b h w (p q c) -> b c (h p) (w q)", p=self.patch_size, q=self.patch_size)
        return self.to_uint8((x + 1) / 2)

    @staticmethod
    def targets(codes: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        mean = codes.mean(-1, keepdim=True)
        var = codes.var(-1, keepdim=True, unbiased=False)
        return (codes - mean) / (var + eps).sqrt()
