"""Token sequences as the model sees them (see ``toto_robot.constants``):

    [start] + frame_0 codes (raster) + ... + frame_{T-1} codes + [end]      (T*h*w + 2 ids)

Tokenizer code c is stored as model id c + NUM_SPECIAL_TOKENS; start is VIDEO_START_TOKEN (1) for
videos and IMAGE_START_TOKEN (3) for packed images; END_TOKEN (2) closes every sequence. The model
reads ``seq[:-1]`` and predicts ``seq[1:]``: block_size = T*h*w + 1.
"""
from __future__ import annotations

import numpy as np
import torch

from toto_robot.constants import END_TOKEN, IMAGE_START_TOKEN, NUM_SPECIAL_TOKENS, VIDEO_START_TOKEN

START = {"video": VIDEO_START_TOKEN, "image": IMAGE_START_TOKEN}


def seq_len(num_frames: int, h: int, w: int) -> int:
    return num_frames * h * w + 2


def block_size(num_frames: int, h: int, w: int) -> int:
    return num_frames * h * w + 1


def codes_to_sequence(codes, kind: str, vocab_size: int) -> np.ndarray:
    """codes [T, h, w] (tokenizer ids) -> int64 [T*h*w + 2] model ids."""
    if kind not in START:
        raise ValueError(f"kind must be 'video' or 'image', got {kind!r}")
    codes = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes).astype(np.int64)
    if codes.ndim != 3:
        raise ValueError(f"codes must be [T, h, w], got shape {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= vocab_size):
        raise ValueError(f"code {codes.max()} outside the tokenizer vocabulary of {vocab_size}")
    body = codes.reshape(-1) + NUM_SPECIAL_TOKENS  # raster order, frame after frame
    return np.concatenate([[START[kind]], body, [END_TOKEN]]).astype(np.int64)


def sequence_to_codes(seq, num_frames: int, h: int, w: int) -> np.ndarray:
    """Inverse of ``codes_to_sequence``: -> [T, h, w] tokenizer ids."""
    seq = np.asarray(seq)
    if seq.shape[-1] != seq_len(num_frames, h, w):
        raise ValueError(f"sequence of {seq.shape[-1]} ids does not hold {num_frames} frames of {h}x{w} tokens")
    return (seq[..., 1:-1] - NUM_SPECIAL_TOKENS).reshape(*seq.shape[:-1], num_frames, h, w)


def model_io(seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T*h*w + 2) -> inputs (B, T*h*w + 1), targets (B, T*h*w + 1)."""
    return seqs[:, :-1], seqs[:, 1:]


def frames_to_ids(tokenizer, frames, kind: str = "video") -> torch.Tensor:
    """uint8 frames [T, H, W, 3] (one clip) or [B, T, H, W, 3] -> model ids without the end token
    ([B, T*h*w + 1]): what a frozen encoder feeds the model."""
    frames = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5:
        raise ValueError(f"frames must be [T, H, W, 3] or [B, T, H, W, 3], got {tuple(frames.shape)}")
    B, T = frames.shape[:2]
    codes = tokenizer.encode(frames.reshape(B * T, *frames.shape[2:]))  # (B*T, h, w)
    body = codes.reshape(B, -1) + NUM_SPECIAL_TOKENS
    start = torch.full((B, 1), START[kind], dtype=torch.long, device=body.device)
    return torch.cat([start, body.long()], dim=1)
