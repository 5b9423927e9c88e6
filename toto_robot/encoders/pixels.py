"""Raw pixels as an encoder: the no-training baseline every real-frame score is read against.

Each frame is centre-cropped and resized to ``input_size``, normalised per channel (ImageNet mean
and std, as the ViT baselines) and cut into ``patch x patch`` patches; a patch's pixels, flattened,
are its token. The token grid is the one a Toto or ViT of the same input size and patch has, so label
propagation over these tokens is "raw-pixel patch features" at the same resolution, and a pooled
vector over an 8 x 8 grid is "raw 8 x 8 pixels" (``patch = input_size // 8``, average pooling per cell).

    enc = build_encoder("pixels", input_size=128, patch=8)    # 16 x 16 tokens of 192 values per frame
    enc.encode_tokens(frames)                                  # uint8 [B,H,W,3] -> [B, 256, 192]

It has no layers: its only "layer" is 0 (the input), and nothing in it is trained.
"""
from __future__ import annotations

import torch
from einops import rearrange

from toto_robot.encoders.base import Encoder, to_model_input
from toto_robot.encoders.vit import IMAGENET_MEAN, IMAGENET_STD


class PixelEncoder(Encoder):
    kind = "pixels"

    def __init__(self, name: str = "pixels", input_size: int = 64, patch: int = 8, pooling: str = "average", layer: int | None = None):
        if input_size < 1 or patch < 1 or input_size % patch:
            raise ValueError(f"pixels encoder: input_size {input_size} must be a positive multiple of patch {patch}")
        if layer not in (None, 0):
            raise ValueError(f"pixels encoder has no layers: layer must be 0 (the input), got {layer}")
        super().__init__(name, pooling)
        self.input_size, self.patch = int(input_size), int(patch)
        self.token_grid = self.input_size // self.patch
        self.token_dim, self.num_layers, self.layer = 3 * self.patch ** 2, 0, 0
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._init_pool()

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def layer_tokens(self, frames, layers):
        video = frames if frames.ndim == 5 else frames[:, None]  # (B, T, H, W, 3)
        B, T = video.shape[:2]
        x = (to_model_input(video.flatten(0, 1), self.input_size, self.device) - self.mean) / self.std  # (B*T, 3, R, R)
        tokens = rearrange(x, "(b t) c (h p) (w q) -> b (t h w) (p q c)", b=B, t=T, p=self.patch, q=self.patch)  # (B, T*g*g, 3p^2)
        return {l: tokens for l in layers}

    def spec(self):
        return {"input_size": self.input_size, "patch": self.patch}

    @classmethod
    def from_spec(cls, name, spec, pooling, layer=None):
        return cls(name, spec["input_size"], spec["patch"], pooling=pooling, layer=layer)
