"""Frozen features of an encoder: token sets and pooled vectors extracted in batches, and an on-disk
cache of a frozen backbone's tokens. Probes (layer sweeps, ridge regression, real-frame scores) and
policies (behaviour cloning) both read features through this module, which imports nothing from
either, so imports flow downward: policies, probes -> encoders.

    tokens = extract_encoder_tokens(encoder, frames)                  # float16 [N, L, C]: what encoder.pool reads
    by_layer = extract_tokens(encoder, frames, layers=[2, 4])         # {layer: float16 [N, L, C]}, one forward per batch
    feats = pooled_features(encoder, frames, [2, 4], ["average", "spatial2"])   # {(layer, pooling): float32 [N, F]}
    tokens = cached_encoder_tokens(encoder, lambda: frames, "runs/token_cache", identity={"demos": ...})

Tokens are stored as float16 (half the memory of float32; probes and pools compute in float32).
"""
from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm.auto import tqdm

from toto_robot.encoders.base import Encoder
from toto_robot.utils.config import ConfigError
from toto_robot.utils.io import atomic_save_tensors, config_hash

log = logging.getLogger(__name__)


@torch.no_grad()
def extract_tokens(encoder: Encoder, x: np.ndarray, layers: list[int], batch_size: int = 32, desc: str = "features") -> dict[int, torch.Tensor]:
    """uint8 images/clips [N, ...] -> {layer: float16 tokens [N, L, C]} (one forward per batch for all layers)."""
    encoder.eval()
    out: dict[int, list[torch.Tensor]] = {l: [] for l in layers}
    for i in tqdm(range(0, len(x), batch_size), desc=desc, unit="batch", leave=False):
        hidden = encoder.hidden_states(x[i:i + batch_size], layers)
        for l in layers:
            out[l].append(hidden[l].to("cpu", torch.float16))
    return {l: torch.cat(v) for l, v in out.items()}


@torch.no_grad()
def extract_encoder_tokens(encoder: Encoder, x: np.ndarray, batch_size: int = 32, desc: str = "features") -> torch.Tensor:
    """uint8 images/clips [N, ...] -> float16 [N, L, C]: what ``encoder.pool`` reads (``encode_tokens``): patch
    tokens of ``encoder.layer``, or one read-out vector per frame for a ViT's ``cls``/``global_pool``."""
    encoder.eval()
    out = [encoder.encode_tokens(x[i:i + batch_size]).to("cpu", torch.float16)
           for i in tqdm(range(0, len(x), batch_size), desc=desc, unit="batch", leave=False)]
    return torch.cat(out)


def pool_tokens(tokens: torch.Tensor, pooling: str, grid: int | None = None) -> torch.Tensor:
    """Tokens of single frames [B, N, C] -> features [B, F]: ``average`` (F = C) or ``spatial<g>`` (F = C*g*g)."""
    if pooling == "average":
        return tokens.mean(1)
    if pooling.startswith("spatial") and pooling[len("spatial"):].isdigit():
        g = int(pooling[len("spatial"):])
        B, N, C = tokens.shape
        side = grid or math.isqrt(N)
        if side * side != N or g > side:
            raise ValueError(f"{pooling} pooling: {N} tokens are not one frame of a square token grid of at least {g} x {g}")
        maps = tokens.transpose(1, 2).reshape(B, C, side, side)  # (B, C, side, side) raster order
        return F.adaptive_avg_pool2d(maps, g).flatten(1)  # (B, C*g*g)
    raise ConfigError(f"unknown pooling {pooling!r}: 'average' or 'spatial<g>' (spatial2, spatial4, ...)")


@torch.no_grad()
def pooled_features(encoder: Encoder, frames: np.ndarray, layers: list[int], poolings, batch_size: int = 32) -> dict[tuple[int, str], np.ndarray]:
    """uint8 frames [N, H, W, 3] -> {(layer, pooling): float32 [N, F]}; one forward per batch for all layers,
    pooled at once so whole token sets are never held for every frame."""
    encoder.eval()
    out: dict[tuple[int, str], list[np.ndarray]] = {(l, p): [] for l in layers for p in poolings}
    for i in tqdm(range(0, len(frames), batch_size), desc=f"{encoder.name} features", unit="batch", leave=False):
        hidden = encoder.hidden_states(frames[i:i + batch_size], layers)
        for l in layers:
            tokens = hidden[l].float()  # (B, N, C)
            for p in poolings:
                out[(l, p)].append(pool_tokens(tokens, p, encoder.token_grid).cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def token_cache_path(encoder: Encoder, cache_dir: str | Path, identity: dict) -> Path:
    """The file in ``cache_dir`` for ``encoder``'s frozen tokens of the inputs that ``identity`` names (a
    JSON-able dict, e.g. the demo folder and episode lengths): keyed by ``identity``, the encoder's layer
    and read-out, its backbone spec and a fingerprint of its weights (so two random inits differ)."""
    weights = hashlib.sha256(b"".join(p.detach().flatten()[:256].cpu().numpy().tobytes() for p in encoder.backbone_parameters()))
    key = config_hash({**identity, "layer": encoder.layer,
                       **({"readout": encoder.token_readout} if encoder.token_readout != "patch" else {}),
                       **({"precision": encoder.precision} if encoder.precision != "float32" else {}),
                       "backbone": encoder.spec(), "weights": weights.hexdigest()})
    return Path(cache_dir) / f"tokens-{encoder.name}-{key}.safetensors"


def cached_encoder_tokens(encoder: Encoder, frames: Callable[[], np.ndarray], cache_dir: str | Path | None, identity: dict,
                          desc: str = "features") -> torch.Tensor:
    """``extract_encoder_tokens(encoder, frames())``, kept in ``cache_dir`` (``token_cache_path``) and read back by a
    later call with the same key: a frozen backbone's tokens of the same frames never change, whatever pool or
    head reads them. ``frames`` is called only on a miss; ``cache_dir=None`` always extracts and stores nothing."""
    path = token_cache_path(encoder, cache_dir, identity) if cache_dir else None
    if path is not None and path.is_file():
        log.info("frozen tokens from %s", path)
        return load_file(str(path))["tokens"]
    tokens = extract_encoder_tokens(encoder, frames(), desc=desc)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_tensors({"tokens": tokens.contiguous()}, path)
    return tokens
