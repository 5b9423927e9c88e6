"""Build any encoder by name, and reload a saved one, behind the one ``Encoder`` interface.

    build_encoder("toto_base", checkpoint="runs/pretrain/<run>/final", layer=6, pooling="attention")
    build_encoder("mvp_vit_b", checkpoint="~/weights/mvp_vit_b.pth")
    build_encoder("vc1_vit_l", checkpoint="~/weights/vc1_vitl.pth", pooling="authors")   # VC-1's own feature
    build_encoder("random", like="runs/pretrain/<run>/final")   # same architecture, untrained
    build_encoder("random")                                        # untrained mae_tiny-shaped ViT
    build_encoder("random", img_size=128)                          # the same at another input size
    build_encoder("pixels", input_size=128, patch=8)               # raw-pixel patches: the no-training baseline
    build_encoder("toto", checkpoint=..., precision="bfloat16")    # the backbone's matmuls in bfloat16 (faster on CPU)
    enc.save_pretrained("out/encoder"); enc = load_encoder("out/encoder")
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from toto_robot.encoders.base import ENCODER_CONFIG, Encoder
from toto_robot.encoders.pixels import PixelEncoder
from toto_robot.encoders.toto import TotoEncoder, build_random_toto_encoder, build_toto_encoder
from toto_robot.encoders.vit import VIT_ALIASES, VIT_CONFIGS, ViTEncoder, build_vit_encoder
from toto_robot.model.toto import CONFIGS as TOTO_SIZES
from toto_robot.utils.io import CheckpointError, load_pretrained

ENCODER_KINDS: dict[str, type[Encoder]] = {"toto": TotoEncoder, "vit": ViTEncoder, "pixels": PixelEncoder}
ENCODER_NAMES = ["toto", *TOTO_SIZES, "random", "pixels", *VIT_CONFIGS, *VIT_ALIASES]


def build_encoder(name: str, checkpoint: str | None = None, layer: int | None = None, pooling: str = "attention",
                  like: str | None = None, seed: int = 0, precision: str = "float32", **kwargs) -> Encoder:
    return _build_encoder(name, checkpoint, layer, pooling, like, seed, **kwargs).set_precision(precision)


def _build_encoder(name: str, checkpoint: str | None, layer: int | None, pooling: str, like: str | None, seed: int,
                   **kwargs) -> Encoder:
    if name == "toto" or name in TOTO_SIZES:
        return build_toto_encoder(name, checkpoint, layer=layer, pooling=pooling, **kwargs)
    if name in VIT_CONFIGS or name in VIT_ALIASES:
        return build_vit_encoder(name, checkpoint, layer=layer, pooling=pooling, **kwargs)
    if name == "pixels":
        return PixelEncoder(pooling=pooling, layer=layer, **kwargs)
    if name == "random":
        if like:
            return build_random_toto_encoder(like, layer=layer, pooling=pooling, seed=seed, resolution=kwargs.get("resolution"),
                                             scan=kwargs.get("scan", "raster"))
        torch.manual_seed(seed)
        enc = build_vit_encoder("mae_tiny", None, layer=layer, pooling=pooling, **kwargs)
        enc.name = "random"
        return enc
    raise KeyError(f"unknown encoder {name!r}; known: {', '.join(ENCODER_NAMES)}")


def load_encoder(directory: str | Path, map_location: str = "cpu") -> Encoder:
    """Rebuild an encoder written by ``Encoder.save_pretrained`` (architecture, frozen weights and pool)."""
    directory = Path(directory)
    sd, _ = load_pretrained(directory, map_location)
    if not (directory / ENCODER_CONFIG).is_file():
        raise CheckpointError(f"{directory} has no {ENCODER_CONFIG}: not a saved encoder")
    cfg = json.loads((directory / ENCODER_CONFIG).read_text())
    kind = cfg.get("encoder")
    if kind not in ENCODER_KINDS:
        raise CheckpointError(f"{directory}: unknown encoder kind {kind!r} (known: {', '.join(ENCODER_KINDS)})")
    enc = ENCODER_KINDS[kind].from_spec(cfg["name"], cfg["spec"], cfg["pooling"], layer=cfg["layer"])
    enc.load_state(sd, cfg.get("tied", {}), str(directory))
    return enc.set_precision(cfg.get("precision", "float32")).to(map_location)


def encoder_from_spec(spec: dict) -> Encoder:
    """A config's encoder entry -> encoder: ``{"dir": saved}`` reloads, otherwise ``build_encoder(**spec)``;
    keys set to None (unset config options) are left to the defaults."""
    spec = {k: v for k, v in dict(spec).items() if v is not None}
    if "dir" in spec:
        return load_encoder(spec["dir"])
    if "name" not in spec:
        raise ValueError(f"encoder spec needs 'name' (or 'dir' of a saved encoder), got {sorted(spec)}")
    return build_encoder(spec.pop("name"), **spec)
