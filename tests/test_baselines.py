"""The ViT baselines as their authors run them: each feature matches an independent reference forward
(timm's ``VisionTransformer``, which MAE's models_vit, MVP's backbones/vit.py and VC-1's vc_models
subclass) within 1e-4, loaded from random weights saved in the authors' checkpoint layout. Each model
keeps its real width, head count, patch size and resolution; the stacks are cut to DEPTH blocks (the
blocks are identical, so depth changes no code path) to keep each test to seconds on a shared CPU.

timm declares torchvision, whose PyPI build links a CUDA torch and does not import beside the CPU
wheel; the ViT code path never calls it, so ``timm_vit`` imports timm behind a placeholder
torchvision module (only for that import) instead of installing it.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from helpers import tiny_toto_run
from toto_robot.encoders import build_encoder, load_encoder
from toto_robot.encoders.vit import VIT_CONFIGS, ViTConfig, vit_input

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
ATOL = 1e-4
DEPTH = 2


class _Placeholder(type):
    def __getattr__(cls, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Placeholder(attr, (), {})


class _NoTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves empty ``torchvision.*`` modules whose attributes are inert classes."""

    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def getattr_(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return _Placeholder(attr, (), {})

        module.__getattr__ = getattr_
        return module

    def exec_module(self, module):
        pass


@pytest.fixture(scope="module")
def timm_vit():
    """timm's ViT and position-grid resampler (timm is pinned in requirements/nodeps.txt)."""
    finder = _NoTorchvision()
    saved = {k: v for k, v in sys.modules.items() if k == "torchvision" or k.startswith("torchvision.")}
    sys.meta_path.insert(0, finder)
    try:
        from timm.layers import resample_abs_pos_embed
        from timm.models.vision_transformer import VisionTransformer
    finally:
        sys.meta_path.remove(finder)
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    return VisionTransformer, resample_abs_pos_embed


def reference_vit(timm_vit, name: str, depth: int = DEPTH, img_size: int | None = None, global_pool: bool = False, seed: int = 0):
    """timm's ViT with the authors' hyper-parameters for ``name`` and random weights (norms and biases too)."""
    VisionTransformer, _ = timm_vit
    cfg = VIT_CONFIGS[name]
    torch.manual_seed(seed)
    model = VisionTransformer(img_size=img_size or cfg.get("img_size", 224), patch_size=cfg.get("patch_size", 16),
                              embed_dim=cfg["embed_dim"], depth=depth, num_heads=cfg["num_heads"], mlp_ratio=4,
                              qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=0,
                              global_pool="avg" if global_pool else "token", fc_norm=global_pool, weight_init="skip")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n and n.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    return model.eval()


def authors_checkpoint(model: nn.Module, *, mae_extras: bool = True, head: bool = False) -> dict:
    """``{"model": state_dict}`` as MAE pre-training / MVP / VC-1 save it (decoder and mask token included)."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    if mae_extras:
        C = sd["cls_token"].shape[-1]
        sd |= {"mask_token": torch.randn(1, 1, 16), "decoder_embed.weight": torch.randn(16, C), "decoder_embed.bias": torch.randn(16),
               "decoder_norm.weight": torch.randn(16), "decoder_pred.weight": torch.randn(3 * 16 * 16, 16)}
    if head:
        sd |= {"head.weight": torch.randn(10, sd["cls_token"].shape[-1]), "head.bias": torch.randn(10)}
    return {"model": sd, "epoch": 399}


def frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def normalised(u8: np.ndarray) -> torch.Tensor:
    """The authors' input: RGB in [0, 1], ImageNet mean/std, [B, 3, H, W]."""
    return (torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["mvp_vit_s", "mvp_vit_b"])
def test_mvp_feature_is_the_final_norm_cls_token_of_mvps_vit(timm_vit, tmp_path, name):
    ref = reference_vit(timm_vit, name)
    torch.save(authors_checkpoint(ref), tmp_path / "mvp.pth")
    enc = build_encoder(name, checkpoint=str(tmp_path / "mvp.pth"), pooling="authors", depth=DEPTH)
    assert enc.pooling == "cls" and enc.backbone.blocks[0].attn.num_heads == 12  # MVP's vit_s16 has 12 heads, not DeiT's 6
    x = frames(1, 224)
    with torch.no_grad():
        want = ref.forward_features(normalised(x))[:, 0]  # MVP: extract_feat's class token, then forward_norm
    close(enc(x), want)
    assert enc.encode_tokens(x).shape == (1, 1, VIT_CONFIGS[name]["embed_dim"])


def test_mvp_vit_l_runs_at_256_px_natively_and_warns_when_asked_for_another_size(timm_vit, tmp_path):
    ref = reference_vit(timm_vit, "mvp_vit_l")  # the real width and 16 heads at 256 px
    torch.save(authors_checkpoint(ref), tmp_path / "vitl256.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the native grid: no interpolation, no warning
        enc = build_encoder("mvp_vit_l", checkpoint=str(tmp_path / "vitl256.pth"), pooling="authors", depth=DEPTH)
    assert enc.input_size == 256 and enc.backbone.grid == 16
    x = frames(1, 256)
    with torch.no_grad():
        want = ref.forward_features(normalised(x))[:, 0]
    close(enc(x), want)

    with pytest.warns(UserWarning, match=r"16x16 interpolated to 14x14 \(256 px -> 224 px\)"):
        small = build_encoder("mvp_vit_l", checkpoint=str(tmp_path / "vitl256.pth"), pooling="cls", depth=DEPTH, img_size=224)
    _, resample = timm_vit
    ref224 = reference_vit(timm_vit, "mvp_vit_l", img_size=224)
    sd = ref.state_dict()
    sd["pos_embed"] = resample(sd["pos_embed"], [14, 14], num_prefix_tokens=1, antialias=False)  # timm's resize_pos_embed, as MVP
    ref224.load_state_dict(sd)
    x = frames(1, 224, seed=1)
    with torch.no_grad():
        close(small(x), ref224.forward_features(normalised(x))[:, 0])


def test_mae_pretraining_checkpoint_reads_out_its_final_norm_cls_token(timm_vit, tmp_path):
    ref = reference_vit(timm_vit, "mae_vit_b")
    torch.save(authors_checkpoint(ref), tmp_path / "mae_pretrain.pth")
    enc = build_encoder("mae_vit_b", checkpoint=str(tmp_path / "mae_pretrain.pth"), pooling="authors", depth=DEPTH)
    x = frames(2, 224)
    with torch.no_grad():
        out = ref.forward_features(normalised(x))  # MAE models_vit without global pooling: norm, then [:, 0]
    assert enc.pooling == "cls"
    close(enc(x), out[:, 0])
    close(enc.encode_tokens(x)[:, 0], out[:, 0])
    # the patch tokens the trainable pools and probes read are the same final-norm tokens
    close(build_encoder("mae_vit_b", checkpoint=str(tmp_path / "mae_pretrain.pth"), pooling="average", depth=DEPTH).encode_tokens(x),
          out[:, 1:])


def test_mae_global_pool_checkpoint_applies_fc_norm_to_the_mean_token(timm_vit, tmp_path):
    ref = reference_vit(timm_vit, "mae_vit_b", global_pool=True)
    assert isinstance(ref.norm, nn.Identity) and "fc_norm.weight" in ref.state_dict()
    torch.save(authors_checkpoint(ref, mae_extras=False, head=True), tmp_path / "mae_finetuned.pth")  # main_finetune --global_pool
    enc = build_encoder("mae_vit_b", checkpoint=str(tmp_path / "mae_finetuned.pth"), pooling="authors", depth=DEPTH)
    assert enc.pooling == "global_pool"
    x = frames(2, 224)
    with torch.no_grad():
        tokens = ref.forward_features(normalised(x))  # no final norm in a global-pool model
        want = ref.forward_head(tokens, pre_logits=True)  # fc_norm(mean of the patch tokens)
    close(enc(x), want)
    # fc_norm is applied once to the mean token, never per token: the patch tokens stay un-normed
    patch = build_encoder("mae_vit_b", checkpoint=str(tmp_path / "mae_finetuned.pth"), pooling="average", depth=DEPTH)
    close(patch.encode_tokens(x), tokens[:, 1:])
    assert (patch(x) - want).abs().max() > 1e-2
    with pytest.raises(ValueError, match="last block"):
        build_encoder("mae_vit_b", checkpoint=str(tmp_path / "mae_finetuned.pth"), pooling="global_pool", depth=DEPTH, layer=1)


def test_global_pool_on_a_pretraining_checkpoint_uses_a_fresh_fc_norm_as_mae_does(timm_vit, tmp_path):
    ref = reference_vit(timm_vit, "mae_vit_b")
    torch.save(authors_checkpoint(ref), tmp_path / "mae_pretrain.pth")
    enc = build_encoder("mae_vit_b", checkpoint=str(tmp_path / "mae_pretrain.pth"), pooling="global_pool", depth=DEPTH)
    x = frames(1, 224)
    with torch.no_grad():
        raw = ref.forward_features(normalised(x))
    # forward_features applied the pre-training norm; undo nothing: recompute the un-normed last block instead
    with torch.no_grad():
        t = ref.blocks(ref._pos_embed(ref.patch_embed(normalised(x))))
    want = nn.functional.layer_norm(t[:, 1:].mean(1), (768,), eps=1e-6)  # models_vit's new fc_norm: weight 1, bias 0
    close(enc(x), want)
    assert (enc(x) - nn.functional.layer_norm(raw[:, 1:].mean(1), (768,), eps=1e-6)).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["vc1_vit_b", "vc1_vit_l"])
def test_vc1_cls_feature_matches_its_reference_with_its_transform(timm_vit, tmp_path, name):
    ref = reference_vit(timm_vit, name)
    torch.save(authors_checkpoint(ref), tmp_path / f"{name}.pth")  # eai-vc's model_ckpts/vc1_vit*.pth: {"model": MAE layout}
    alias = name.replace("_vit_", "_vit")  # eai-vc's own spelling, vc1_vitb / vc1_vitl
    enc = build_encoder(alias, checkpoint=str(tmp_path / f"{name}.pth"), pooling="authors", depth=DEPTH)
    assert enc.name == name and enc.pooling == "cls"
    x = frames(1, 256)  # shorter side already 256: VC-1's Resize is the identity and CenterCrop(224) cuts 16 px each side
    with torch.no_grad():
        want = ref.forward_features(normalised(x[:, 16:240, 16:240]))[:, 0]
    close(enc(x), want)


def test_vc1_transform_matches_resize_256_bicubic_and_centre_crop_224():
    rng = np.random.default_rng(0)
    img = (np.clip(rng.normal(0, 1, (120, 160, 3)).cumsum(0).cumsum(1), -60, 60) + 128).astype(np.uint8)  # smooth, wide frame
    cfg = ViTConfig(**VIT_CONFIGS["vc1_vit_b"])
    ours = vit_input(torch.from_numpy(img)[None], cfg, "cpu")[0].permute(1, 2, 0).numpy()  # (224, 224, 3) in [0, 1]
    resized = np.asarray(Image.fromarray(img).resize((341, 256), Image.BICUBIC), np.float32) / 255  # T.Resize(256, BICUBIC) on PIL
    top, left = 16, int(round((341 - 224) / 2.0))
    want = resized[top:top + 224, left:left + 224]
    assert ours.shape == want.shape == (224, 224, 3)
    assert np.abs(ours - want).max() < 2.5 / 255  # PIL rounds to 8 bits in between
    assert np.abs(ours - want).mean() < 0.5 / 255


def test_readout_poolings_save_reload_and_refuse_encoders_without_a_cls_token(tmp_path):
    enc = build_encoder("mae_tiny", pooling="cls")
    x = frames(2, 64)
    enc.save_pretrained(tmp_path / "enc")
    again = load_encoder(tmp_path / "enc")
    assert again.pooling == "cls" and again.token_readout == "cls"
    torch.testing.assert_close(again(x), enc(x), atol=0, rtol=0)
    clip = np.stack([frames(3, 64, seed=s) for s in range(2)])  # (2, 3, 64, 64, 3): one class token per frame, averaged
    assert enc.encode_tokens(clip).shape == (2, 3, 192)
    torch.testing.assert_close(enc(clip), enc.encode_tokens(clip).mean(1))
    g = build_encoder("mae_tiny", pooling="global_pool")
    g.save_pretrained(tmp_path / "g")
    torch.testing.assert_close(load_encoder(tmp_path / "g")(x), g(x), atol=0, rtol=0)
    run = tiny_toto_run(tmp_path / "toto")
    for pooling in ("cls", "authors"):
        with pytest.raises(ValueError, match="class token"):
            build_encoder("toto", checkpoint=str(run), pooling=pooling)
    with pytest.raises(TypeError, match="unknown ViT option"):
        build_encoder("mvp_vit_b", heads=6)
