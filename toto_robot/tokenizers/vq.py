"""VQ-VAE tokenizer with an EMA codebook (van den Oord et al. 2017; VQGAN-style conv stacks).

Codebook updated by exponential moving averages of assigned encoder outputs; codes unused for
``dead_after`` updates are restarted at random encoder outputs of the current batch. ``usage()``
reports the fraction of codes in use and the code perplexity.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from toto_robot.tokenizers.base import Tokenizer
from toto_robot.utils.config import ConfigError


def _res(ch: int) -> nn.Module:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 1))


class _Residual(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.f = _res(ch)

    def forward(self, x):
        return x + self.f(x)


class VQTokenizer(Tokenizer):
    kind = "vq"
    encode_channels_last = False  # measured 0.9x slower with NHWC input at batch 4 (bench_tokenizers --variants)

    def __init__(self, vocab_size: int = 1024, width: int = 64, code_dim: int = 32, downsample: int = 8,
                 decay: float = 0.99, commitment: float = 0.25, dead_after: int = 50):
        super().__init__(vocab_size=vocab_size, downsample=downsample)
        n_down = downsample.bit_length() - 1
        if 2**n_down != downsample:
            raise ConfigError(f"downsample must be a power of two, got {downsample}")
        self.hparams = dict(vocab_size=vocab_size, width=width, code_dim=code_dim, downsample=downsample, decay=decay,
                            commitment=commitment, dead_after=dead_after)
        enc = [nn.Conv2d(3, width, 3, padding=1)]
        for _ in range(n_down):
            enc += [nn.ReLU(), nn.Conv2d(width, width, 4, stride=2, padding=1)]
        enc += [_Residual(width), _Residual(width), nn.ReLU(), nn.Conv2d(width, code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv2d(code_dim, width, 3, padding=1), _Residual(width), _Residual(width)]
        for _ in range(n_down):
            dec += [nn.ReLU(), nn.ConvTranspose2d(width, width, 4, stride=2, padding=1)]
        dec += [nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("codebook", torch.randn(vocab_size, code_dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(vocab_size))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("idle", torch.zeros(vocab_size, dtype=torch.long))
        self.register_buffer("last_counts", torch.zeros(vocab_size))

    def config(self) -> dict:
        return dict(self.hparams)

    def _quantize(self, z: torch.Tensor) -> torch.Tensor:  # z (N, C) -> codes (N,)
        d = z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codebook.t() + self.codebook.pow(2).sum(1)[None]
        return d.argmin(1)

    def _encode_z(self, x):
        return self.encoder(x * 2 - 1)  # (B, C, h, w)

    def training_loss(self, x, step, total_steps):
        z = self._encode_z(x)
        B, C, h, w = z.shape
        flat = rearrange(z, "b c h w -> (b h w) c")
        codes = self._quantize(flat.detach())
        q = self.codebook[codes]
        if self.training:
            self._ema_update(flat.detach(), codes)
        commit = F.mse_loss(flat, q)
        q_st = flat + (q - flat).detach()  # straight-through estimator
        recon = torch.sigmoid(self.decoder(rearrange(q_st, "(b h w) c -> b c h w", b=B, h=h, w=w)))
        rec = F.mse_loss(recon, x)
        used, ppl = self.usage()
        return rec + self.hparams["commitment"] * commit, {"mse": rec.item(), "commit": commit.item(), "usage": used, "perplexity": ppl}

    @torch.no_grad()
    def _ema_update(self, flat, codes):
        decay = self.hparams["decay"]
        onehot = F.one_hot(codes, self.vocab_size).type_as(flat)  # (N, V)
        counts = onehot.sum(0)
        self.last_counts.copy_(counts)
        self.ema_count.mul_(decay).add_(counts, alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(onehot.t() @ flat, alpha=1 - decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + self.vocab_size * 1e-5) * n
        self.codebook.copy_(self.ema_sum / smoothed[:, None])
        self.idle.add_(1).masked_fill_(counts > 0, 0)
        dead = (self.idle >= self.hparams["dead_after"]).nonzero().flatten()
        if len(dead):  # restart dead codes at random encoder outputs of this batch
            pick = flat[torch.randint(0, len(flat), (len(dead),), device=flat.device)]
            self.codebook[dead] = pick
            self.ema_sum[dead] = pick
            self.ema_count[dead] = 1.0
            self.idle[dead] = 0

    def usage(self) -> tuple[float, float]:
        """(fraction of codes used in the last batch, perplexity of the code distribution)."""
        c = self.last_counts
        if c.sum() == 0:
            return 0.0, 0.0
        p = c / c.sum()
        ppl = torch.exp(-(p * torch.log(p + 1e-10)).sum()).item()
        return (c > 0).float().mean().item(), ppl

    def encode(self, frames):
        frames = self.check_frames(frames)
        with self._encode_mode():
            z = self._encode_z(self._encoder_input(self.to_unit(frames)))  # (B, C, h, w)
            B, C, h, w = z.shape
            codes = self._quantize(rearrange(z, "b c h w -> (b h w) c")).view(B, h, w).cpu()
        return codes.clone() if codes.is_inference() else codes

    @torch.no_grad()
    def decode(self, codes):
        codes = self.check_codes(codes).to(self.codebook.device)
        q = rearrange(self.codebook[codes], "b h w c -> b c h w")
        return self.to_uint8(torch.sigmoid(self.decoder(q)))
