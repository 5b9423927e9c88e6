"""Toto as a frozen encoder (paper Sec. 3.5): tokenize the frames, run the decoder up to an
intermediate layer (about half depth is best), pool the token features.

    enc = build_encoder("toto_tiny", checkpoint="runs/pretrain/.../final")  # holds tokenizer/ and data.json
    feats = enc(frames)  # uint8 [B,H,W,3] (one frame) or [B,T,H,W,3] (a clip) -> [B, n_embd]

A single image is read as a one-frame video (video start token, then its raster-scan tokens);
a clip is read as its frames in order, exactly as in pre-training. Frames are centre-cropped
and resized to the tokenizer's pre-training resolution.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from toto_robot.constants import NUM_SPECIAL_TOKENS
from toto_robot.data.sequence import frames_to_ids
from toto_robot.encoders.base import Encoder, resize_frames_u8
from toto_robot.model.toto import Toto, TotoConfig
from toto_robot.tokenizers import Tokenizer, build_tokenizer, load_tokenizer
from toto_robot.utils.config import ConfigError
from toto_robot.utils.io import CheckpointError


# Read-out scans: a causal model in raster order gives each token context from above and to its left only.
# Each scan reads the frames mirrored by its flips (H, W axes) and flips the token grid back; the token
# features of the scans are averaged, so every token gets context from every side ("both": the raster scan
# and its reverse, i.e. the frame rotated by 180 degrees).
SCANS = {"raster": [()], "both": [(), (-3, -2)], "four": [(), (-2,), (-3,), (-3, -2)]}


class TotoEncoder(Encoder):
    kind = "toto"

    def __init__(self, name: str, model: Toto, tokenizer: Tokenizer, resolution: int, layer: int | None = None,
                 pooling: str = "attention", start: str = "video", scan: str = "raster"):
        super().__init__(name, pooling)
        if scan not in SCANS:
            raise ConfigError(f"{name}: scan must be one of {', '.join(SCANS)}, got {scan!r}")
        self.scan = scan
        cfg = model.config
        if tokenizer.is_discrete and cfg.vocab_size < tokenizer.vocab_size + NUM_SPECIAL_TOKENS:
            raise CheckpointError(f"{name}: tokenizer has {tokenizer.vocab_size} codes but the model's vocabulary is "
                                  f"{cfg.vocab_size} (needs {tokenizer.vocab_size + NUM_SPECIAL_TOKENS}): mismatched tokenizer")
        if resolution % tokenizer.downsample:
            raise ConfigError(f"resolution {resolution} is not a multiple of the tokenizer's downsampling {tokenizer.downsample}")
        self.model, self.tokenizer = model.eval(), tokenizer.eval()
        self.resolution, self.start = resolution, start
        self.input_size = resolution  # frames are centre-cropped and resized to this before tokenizing
        self.token_grid = resolution // tokenizer.downsample
        self.tokens_per_frame = self.token_grid ** 2
        self.token_dim, self.num_layers = cfg.n_embd, cfg.n_layer
        self.layer = max(1, cfg.n_layer // 2) if layer is None else int(layer)
        if not 1 <= self.layer <= cfg.n_layer:
            raise ConfigError(f"{name}: layer {self.layer} outside 1..{cfg.n_layer}")
        self._init_pool()

    @property
    def max_frames(self) -> int:
        return (self.model.config.block_size - 1) // self.tokens_per_frame

    def layer_tokens(self, frames, layers):
        video = frames if frames.ndim == 5 else frames[:, None]  # (B, T, H, W, 3)
        B, T = video.shape[:2]
        if T > self.max_frames:
            raise ConfigError(f"{self.name}: a clip of {T} frames needs {T * self.tokens_per_frame + 1} positions; "
                             f"the model's context holds {self.max_frames} frames")
        u8 = resize_frames_u8(video.flatten(0, 1), self.resolution, self.device)  # (B*T, R, R, 3), as the tokenizer saw it
        out: dict[int, torch.Tensor] = {}
        g = self.token_grid
        for flips in SCANS[self.scan]:
            hidden = self._raster_tokens(u8.flip(flips) if flips else u8, B, T, layers)
            for l, h in hidden.items():  # flip the token grid back: (B, T*g*g, C)
                h = h.reshape(B, T, g, g, h.shape[-1]).flip(flips).reshape(h.shape) if flips else h  # same H, W axes as u8
                out[l] = out[l] + h if l in out else h
        n = len(SCANS[self.scan])
        return {l: h / n for l, h in out.items()} if n > 1 else out

    def _raster_tokens(self, u8, B, T, layers):
        """Resized frames (B*T, R, R, 3) -> {layer: (B, T*h*w, C)} of one raster-order pass."""
        if self.tokenizer.is_discrete:  # the pre-training layout: start token, then raster-scan ids of each frame
            idx = frames_to_ids(self.tokenizer, u8.reshape(B, T, *u8.shape[1:]), self.start).to(self.device)  # (B, 1 + T*h*w)
        else:
            codes = self.tokenizer.encode(u8)  # (B*T, h, w, D) patches
            body = codes.reshape(B, -1, codes.shape[-1]).float()  # (B, T*h*w, D)
            idx = torch.cat([body, torch.zeros_like(body[:, :1])], dim=1).to(self.device)  # the model shifts right
        hidden = self.model.features(idx, list(layers))
        return {l: h[:, 1:] for l, h in hidden.items()}  # position i has read tokens <= i: (B, T*h*w, C)

    def spec(self):
        return {"model": self.model.config.to_dict(), "tokenizer": {"tokenizer": self.tokenizer.kind, **self.tokenizer.config()},
                "resolution": self.resolution, "start": self.start, "scan": self.scan}

    @classmethod
    def from_spec(cls, name, spec, pooling, layer=None):
        tok_cfg = dict(spec["tokenizer"])
        tokenizer = build_tokenizer(tok_cfg.pop("tokenizer"), **tok_cfg)
        model = Toto(TotoConfig.from_dict(spec["model"]))
        return cls(name, model, tokenizer, spec["resolution"], layer=layer, pooling=pooling, start=spec.get("start", "video"),
                   scan=spec.get("scan", "raster"))


def read_pretrained_run(checkpoint: str | Path) -> tuple[Toto, Tokenizer, int]:
    """A pre-training ``final/`` dir (or the run dir holding it) -> (model, tokenizer, resolution)."""
    path = Path(checkpoint).expanduser()
    if (path / "final").is_dir() and not (path / "tokenizer").is_dir():
        path = path / "final"
    if not path.is_dir():
        raise CheckpointError(f"Toto checkpoint not found: {path} (give the pre-training run's final/ directory)")
    if not (path / "tokenizer").is_dir():
        raise CheckpointError(f"{path} has no tokenizer/ folder: a Toto encoder needs the tokenizer it was pre-trained with")
    model = Toto.from_pretrained(path)
    tokenizer = load_tokenizer(path / "tokenizer")
    data = json.loads((path / "data.json").read_text()) if (path / "data.json").is_file() else {}
    resolution = int(data.get("tokenizer", {}).get("resolution") or 0)
    if not resolution:
        side = int(round(model.config.tokens_per_frame ** 0.5))
        resolution = side * tokenizer.downsample
    return model, tokenizer, resolution


def build_toto_encoder(name: str, checkpoint: str | None = None, layer: int | None = None, pooling: str = "attention",
                       start: str = "video", resolution: int | None = None, scan: str = "raster") -> TotoEncoder:
    """``toto_tiny`` ... ``toto_1b`` (the checkpoint must be that size) or ``toto`` (any size) from a pre-trained run.
    ``resolution`` reads frames at another size than pre-training (more tokens per frame; the clip must still fit
    the model's context), e.g. a 128 px run read at 256 px for dense tasks such as label propagation. ``scan``
    averages the tokens of mirrored reads (``SCANS``) so every token sees context on all sides."""
    if not checkpoint:
        raise CheckpointError(f"encoder {name!r} needs checkpoint=<pre-training final/ dir>; "
                              f"use 'random' for an untrained control")
    model, tokenizer, trained = read_pretrained_run(checkpoint)
    if name != "toto":
        want = TotoConfig.from_name(name)
        got = model.config
        if (want.n_embd, want.n_layer, want.n_head) != (got.n_embd, got.n_layer, got.n_head):
            raise CheckpointError(f"{checkpoint} holds a {got.n_embd}/{got.n_layer}/{got.n_head} model, not {name} "
                                  f"({want.n_embd}/{want.n_layer}/{want.n_head}); use name 'toto' for any size")
    return TotoEncoder(name, model, tokenizer, read_resolution(model, tokenizer, trained, resolution), layer=layer, pooling=pooling, start=start,
                       scan=scan)


def read_resolution(model: Toto, tokenizer: Tokenizer, trained: int, resolution: int | None) -> int:
    """The frame size an encoder reads: the pre-training size, or ``resolution`` when one frame of it fits the context."""
    if not resolution or int(resolution) == trained:
        return trained
    tokens = (int(resolution) // tokenizer.downsample) ** 2
    if tokens + 1 > model.config.block_size:
        raise ConfigError(f"resolution {resolution}: one frame is {tokens} tokens but the model's context holds "
                          f"{model.config.block_size - 1} (pre-trained at {trained} px)")
    return int(resolution)


def build_random_toto_encoder(like: str, layer: int | None = None, pooling: str = "attention", seed: int = 0,
                              resolution: int | None = None, scan: str = "raster") -> TotoEncoder:
    """The random-init control: same tokenizer and architecture as the run ``like``, transformer re-initialised."""
    model, tokenizer, trained = read_pretrained_run(like)
    torch.manual_seed(seed)
    fresh = Toto(model.config)
    return TotoEncoder("random", fresh, tokenizer, read_resolution(fresh, tokenizer, trained, resolution), layer=layer, pooling=pooling,
                       scan=scan)


__all__ = ["TotoEncoder", "build_toto_encoder", "build_random_toto_encoder", "read_pretrained_run"]
