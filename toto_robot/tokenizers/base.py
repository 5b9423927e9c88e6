"""One interface for every visual tokenizer: uint8 frames in, codes out, and back.

    codes = tok.encode(frames)   # frames uint8 [B, H, W, 3] -> LongTensor [B, h, w] (discrete)
                                 #                             or float [B, h, w, D] (patch tokens)
    frames = tok.decode(codes)   # -> uint8 [B, H, W, 3]

``vocab_size`` counts codes without the special ids (0 for continuous tokens); ``downsample`` is
H / h. Inputs are validated at the boundary (dtype, rank, channel order, divisibility) with
errors that say what was wrong.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from toto_robot.errors import UserError
from toto_robot.utils.io import check_state_dict, save_pretrained


class TokenizerInputError(UserError, ValueError):
    """Frames or codes handed to a tokenizer have the wrong dtype, shape, size or range."""


class Tokenizer(nn.Module):
    kind: str = ""
    is_discrete: bool = True

    def __init__(self, vocab_size: int, downsample: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.downsample = downsample

    # ---- boundary checks ----
    def check_frames(self, frames) -> torch.Tensor:
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        if not isinstance(frames, torch.Tensor):
            raise TokenizerInputError(f"frames must be a uint8 array or tensor, got {type(frames).__name__}")
        if frames.dtype != torch.uint8:
            raise TokenizerInputError(f"frames must be uint8 in [0, 255], got dtype {frames.dtype} (convert with (x * 255).astype(uint8))")
        if frames.ndim != 4:
            raise TokenizerInputError(f"frames must be [B, H, W, 3], got shape {tuple(frames.shape)}")
        if frames.shape[-1] != 3:
            hint = " (channels-first? pass channels-last [B, H, W, 3])" if frames.shape[1] == 3 else ""
            raise TokenizerInputError(f"frames must have 3 channels last, got shape {tuple(frames.shape)}{hint}")
        H, W = frames.shape[1:3]
        if H % self.downsample or W % self.downsample:
            raise TokenizerInputError(f"frame size {H}x{W} is not divisible by the tokenizer's downsampling factor {self.downsample}")
        return frames

    def check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if self.is_discrete:
            if codes.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
                raise TokenizerInputError(f"codes must be integers, got {codes.dtype}")
            if codes.ndim != 3:
                raise TokenizerInputError(f"codes must be [B, h, w], got shape {tuple(codes.shape)}")
            if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.vocab_size):
                raise TokenizerInputError(f"code {int(codes.max())} outside the tokenizer vocabulary of {self.vocab_size} (ids with the 4 special ids still added?)")
            return codes.long()
        if codes.ndim != 4:
            raise TokenizerInputError(f"patch tokens must be [B, h, w, D], got shape {tuple(codes.shape)}")
        return codes.float()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device if any(True for _ in self.parameters()) else torch.device("cpu")

    def to_unit(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [0, 1] on the tokenizer's device."""
        return frames.to(self.device).permute(0, 3, 1, 2).float() / 255.0

    @staticmethod
    def to_uint8(x: torch.Tensor) -> torch.Tensor:
        """float [B, 3, H, W] in [0, 1] -> uint8 [B, H, W, 3] on the CPU."""
        return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()

    # ---- encoder settings (convolutional tokenizers) ----
    encode_channels_last = True  # feed the conv encoder NHWC tensors (oneDNN's fastest layout on CPU)
    encode_inference_mode = True  # encode under torch.inference_mode (no autograd or version tracking)

    @contextlib.contextmanager
    def encode_settings(self, channels_last: bool | None = None, inference_mode: bool | None = None):
        """Temporarily change how ``encode`` runs (benchmarks compare the settings)."""
        old = self.encode_channels_last, self.encode_inference_mode
        if channels_last is not None:
            self.encode_channels_last = channels_last
        if inference_mode is not None:
            self.encode_inference_mode = inference_mode
        try:
            yield self
        finally:
            self.encode_channels_last, self.encode_inference_mode = old

    def _encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.encode_channels_last else x

    def _encode_mode(self):
        return torch.inference_mode() if self.encode_inference_mode else torch.no_grad()

    # ---- interface ----
    def config(self) -> dict:
        raise TypeError(f"{type(self).__name__} must define config()")

    @torch.no_grad()
    def encode(self, frames) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must define encode()")

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must define decode()")

    def training_loss(self, x: torch.Tensor, step: int, total_steps: int) -> tuple[torch.Tensor, dict]:
        """x float [B, 3, H, W] in [0, 1] -> (loss, metrics)."""
        raise TypeError(f"{type(self).__name__} is not trainable")

    def hash(self) -> str:
        h = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode())
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_pretrained(directory, self.state_dict(), {"tokenizer": self.kind, **self.config()})

    def load_weights(self, sd: dict, source: str) -> None:
        check_state_dict(self.state_dict(), sd, source, what="tokenizer")
        self.load_state_dict(sd)
