"""Frozen encoders: Toto features at a chosen layer, MAE/MVP checkpoints in their own key layout, persistence."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers import tiny_toto_run
from toto_robot.encoders import Encoder, FrameFormatError, build_encoder, load_encoder
from toto_robot.encoders.vit import VIT_CONFIGS, ViTConfig, Attention, sincos_pos_embed
from toto_robot.model.toto import Toto
from toto_robot.tokenizers import load_tokenizer
from toto_robot.utils.io import CheckpointError


def frames(*shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def test_toto_encoder_reads_half_depth_tokens_of_the_pretrained_model(tmp_path):
    final = tiny_toto_run(tmp_path)
    enc = build_encoder("toto", checkpoint=str(final), pooling="average")
    assert enc.layer == 2 and enc.feature_dim == 32
    x = frames(3, 48, 48)  # resized to the tokenizer's 32 px inside
    tokens = enc.encode_tokens(x)
    assert tokens.shape == (3, 16, 32)
    # reference: tokenizer -> ids -> model hidden state at layer 2, computed by hand
    model, tok = Toto.from_pretrained(final), load_tokenizer(final / "tokenizer")
    small = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, size=(32, 32),
                                            mode="bilinear", antialias=True)
    u8 = (small * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    ids = torch.cat([torch.ones(3, 1, dtype=torch.long), tok.encode(u8).reshape(3, -1) + 4], dim=1)
    ref = model(ids, return_layers=[2]).hidden[2][:, 1:]
    torch.testing.assert_close(tokens, ref)
    torch.testing.assert_close(enc(x), ref.mean(1))
    clip = enc.encode_tokens(frames(2, 3, 32, 32))  # a 3-frame clip
    assert clip.shape == (2, 48, 32)
    with pytest.raises(ValueError, match="context"):
        enc.encode_tokens(frames(1, 5, 32, 32))


def test_only_the_pool_trains_and_save_load_roundtrip(tmp_path):
    enc = build_encoder("toto", checkpoint=str(tiny_toto_run(tmp_path)), layer=3)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("pool.") for n in trainable)
    x = frames(4, 32, 32)
    enc(x).sum().backward()
    # k.bias shifts every score of a head alike, which the softmax ignores: it never gets a gradient
    assert all(p.grad is not None for n, p in enc.named_parameters() if n.startswith("pool.") and n != "pool.k.bias")
    assert enc.pool.k.bias.grad is None
    with torch.no_grad():
        enc.pool.query.add_(1.0)  # a "trained" pool must survive the round trip
    enc.train()
    assert not enc.model.training and enc.pool.training
    enc.save_pretrained(tmp_path / "saved")
    again = load_encoder(tmp_path / "saved")
    assert type(Encoder.from_pretrained(tmp_path / "saved")) is type(again) and again.input_size == 32
    assert again.layer == 3 and again.name == "toto"
    torch.testing.assert_close(enc.eval()(x), again.eval()(x))


def test_toto_encoder_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        build_encoder("toto", checkpoint=str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="checkpoint="):
        build_encoder("toto_tiny")
    final = tiny_toto_run(tmp_path)
    with pytest.raises(CheckpointError, match="not toto_base"):
        build_encoder("toto_base", checkpoint=str(final))
    enc = build_encoder("toto", checkpoint=str(final))
    with pytest.raises(FrameFormatError, match="channels"):
        enc(np.zeros((1, 3, 32, 32), np.uint8))
    with pytest.raises(FrameFormatError, match="uint8"):
        enc(np.zeros((1, 32, 32, 3), np.float32))
    big = tiny_toto_run(tmp_path / "b", vocab=128)
    from toto_robot.encoders.toto import TotoEncoder
    with pytest.raises(CheckpointError, match="mismatched tokenizer"):
        TotoEncoder("x", Toto.from_pretrained(final), load_tokenizer(big / "tokenizer"), 32)


def test_random_control_has_the_same_architecture_and_different_features(tmp_path):
    final = tiny_toto_run(tmp_path)
    pre, rnd = build_encoder("toto", checkpoint=str(final), pooling="average"), build_encoder("random", like=str(final), pooling="average")
    x = frames(2, 32, 32)
    assert pre(x).shape == rnd(x).shape
    assert not torch.allclose(pre(x), rnd(x))
    assert build_encoder("random")(frames(2, 64, 64)).shape == (2, 192)


def mae_checkpoint(cfg: ViTConfig, grid: int | None = None) -> dict:
    """A state dict in the official MAE pre-training checkpoint layout ({"model": ...} with a decoder)."""
    torch.manual_seed(1)
    C, g = cfg.embed_dim, grid or cfg.img_size // cfg.patch_size
    sd = {"cls_token": torch.randn(1, 1, C), "pos_embed": sincos_pos_embed(C, g), "mask_token": torch.randn(1, 1, 16),
          "patch_embed.proj.weight": torch.randn(C, 3, cfg.patch_size, cfg.patch_size) * 0.02, "patch_embed.proj.bias": torch.randn(C),
          "norm.weight": torch.rand(C) + 0.5, "norm.bias": torch.randn(C), "decoder_embed.weight": torch.randn(16, C),
          "decoder_pred.weight": torch.randn(3 * cfg.patch_size**2, 16)}
    for i in range(cfg.depth):
        p, H = f"blocks.{i}.", int(C * cfg.mlp_ratio)
        for n in ("norm1", "norm2"):
            sd[p + n + ".weight"], sd[p + n + ".bias"] = torch.rand(C) + 0.5, torch.randn(C) * 0.1
        for n, shape in (("attn.qkv", (3 * C, C)), ("attn.proj", (C, C)), ("mlp.fc1", (H, C)), ("mlp.fc2", (C, H))):
            sd[p + n + ".weight"], sd[p + n + ".bias"] = torch.randn(shape) * 0.05, torch.randn(shape[0]) * 0.01
    return {"model": sd, "epoch": 799}


def test_mae_checkpoint_loads_in_its_own_layout(tmp_path):
    cfg = ViTConfig(**VIT_CONFIGS["mae_tiny"])
    ckpt = mae_checkpoint(cfg)
    torch.save(ckpt, tmp_path / "mae.pth")
    enc = build_encoder("mae_tiny", checkpoint=str(tmp_path / "mae.pth"), pooling="average")
    for k, v in enc.backbone.state_dict().items():
        torch.testing.assert_close(v, ckpt["model"][k])
    out = enc(frames(2, 64, 64))
    assert out.shape == (2, 192) and torch.isfinite(out).all()
    assert enc.encode_tokens(frames(2, 64, 64)).shape == (2, 64, 192)
    # a 224-px-grid checkpoint loads into the 64-px encoder with its position grid resized
    torch.save(mae_checkpoint(cfg, grid=14), tmp_path / "mae224.pth")
    enc2 = build_encoder("mae_tiny", checkpoint=str(tmp_path / "mae224.pth"))
    assert enc2.backbone.pos_embed.shape == (1, 65, 192)


def test_vit_checkpoint_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        build_encoder("mvp_vit_b", checkpoint=str(tmp_path / "missing.pth"))
    cfg = ViTConfig(**VIT_CONFIGS["mae_tiny"])
    sd = mae_checkpoint(cfg)["model"]
    del sd["blocks.0.attn.qkv.weight"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="blocks.0.attn.qkv.weight"):
        build_encoder("mae_tiny", checkpoint=str(tmp_path / "broken.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        build_encoder("mae_tiny", checkpoint=str(tmp_path / "junk.pth"))


def test_vit_attention_matches_torch_multihead_attention():
    cfg = ViTConfig(embed_dim=48, num_heads=4)
    ours, ref = Attention(cfg), nn.MultiheadAttention(48, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight), ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight), ref.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 10, 48)
    torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)


def test_every_vit_name_builds_with_the_published_width():
    widths = {"mae_vit_b": 768, "mae_vit_l": 1024, "mvp_vit_s": 384, "mvp_vit_b": 768, "mvp_vit_l": 1024}
    for name, width in widths.items():
        assert VIT_CONFIGS[name]["embed_dim"] == width
    enc = build_encoder("mvp_vit_s", pooling="average")
    assert sum(p.numel() for p in enc.backbone.parameters()) == pytest.approx(21.7e6, rel=0.03)


def test_mae_pretraining_lowers_the_masked_loss_and_its_checkpoint_loads_as_an_encoder(tmp_path):
    import json

    from toto_robot.data.synthetic import moving_shapes
    from toto_robot.mae import MAEPretrainConfig, pretrain_mae

    frames = np.concatenate([moving_shapes(16, 32, 2, np.random.default_rng(i))[0] for i in range(8)])
    out = pretrain_mae(MAEPretrainConfig(out_dir=str(tmp_path), steps=40, batch_size=16, lr=2e-3, warmup_steps=4, holdout=16), frames, img_size=32)
    m = json.loads((out / "metrics.json").read_text())
    assert m["final_loss"] < 0.8 * m["first_loss"]
    enc = build_encoder("mae_tiny", checkpoint=str(out / "mae_vit.safetensors"), img_size=32)
    from safetensors.torch import load_file

    sd = load_file(str(out / "mae_vit.safetensors"))
    assert any(k.startswith("decoder_") for k in sd)  # the official layout, decoder included
    torch.testing.assert_close(enc.backbone.blocks[0].attn.qkv.weight, sd["blocks.0.attn.qkv.weight"])
    assert enc(frames[:2]).shape == (2, 192)


def _where_task(n: int, grid: int = 6, dim: int = 32, seed: int = 0):
    """Tokens of an empty grid with one 'object' token (the same content wherever it is); target = its (row, col)."""
    background, obj = torch.randn(2, dim, generator=torch.Generator().manual_seed(0))  # the same scene for every seed
    g = torch.Generator().manual_seed(1 + seed)
    cells = torch.randint(0, grid * grid, (n,), generator=g)
    tokens = background.repeat(n, grid * grid, 1) + 0.05 * torch.randn(n, grid * grid, dim, generator=g)
    tokens[torch.arange(n), cells] += obj
    return tokens, torch.stack([cells // grid, cells % grid], 1).float() / (grid - 1)


@pytest.mark.parametrize("pooling", ["attention", "spatial_attention", "keypoints", "grid"])
def test_spatial_attention_pooling_reads_where_an_object_is(pooling):
    from toto_robot.encoders.base import build_pool

    torch.manual_seed(0)
    x, y = _where_task(512)
    xv, yv = _where_task(256, seed=1)
    pool = build_pool(pooling, 32, grid=6)
    head = nn.Linear(32, 2)
    opt = torch.optim.Adam([*pool.parameters(), *head.parameters()], lr=3e-3)
    for _ in range(300):
        loss = F.mse_loss(head(pool(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        val = F.mse_loss(head(pool(xv)), yv).item()
    baseline = yv.var(0).sum().item() / 2  # predicting the mean
    if pooling in ("spatial_attention", "keypoints", "grid"):
        assert val < 0.1 * baseline, (val, baseline)
    else:  # content-only pooling cannot tell one cell from another
        assert val > 0.7 * baseline, (val, baseline)


def test_grid_pool_gives_each_cell_its_own_weights_and_averages_a_clip_over_its_frames(tmp_path):
    from toto_robot.encoders.base import build_pool

    torch.manual_seed(0)
    pool = build_pool("grid", 8, grid=4)
    x = torch.randn(3, 16, 8)
    swapped = x.clone()
    swapped[:, [0, 5]] = x[:, [5, 0]]  # the same tokens in other cells: attention and average pools cannot tell
    assert not torch.allclose(pool(x), pool(swapped))
    clip = torch.cat([x, x], dim=1)  # two identical frames in raster order
    torch.testing.assert_close(pool(clip), pool(x))
    with pytest.raises(ValueError, match="not whole frames of a 4 x 4"):
        pool(torch.randn(2, 17, 8))
    with pytest.raises(ValueError, match="token grid"):
        build_pool("grid", 8)
    enc = build_encoder("toto", checkpoint=str(tiny_toto_run(tmp_path)), pooling="grid")
    f = frames(2, 32, 32)
    enc.save_pretrained(tmp_path / "saved")
    torch.testing.assert_close(enc.eval()(f), load_encoder(tmp_path / "saved").eval()(f))
    assert enc(f).shape == (2, enc.feature_dim)


def test_keypoints_pool_is_the_soft_argmax_of_its_scores(tmp_path):
    """Every keypoint is the softmax-weighted mean of the token cells' (x, y) in [-1, 1]: a token that
    dominates a keypoint's score puts that keypoint on its cell; save and reload keep the function."""
    from toto_robot.encoders.base import build_pool

    pool = build_pool("keypoints", 8, grid=4)
    with torch.no_grad():
        pool.score.weight.zero_()
        pool.score.bias.zero_()
        pool.score.weight[0, 0] = 50.0  # keypoint 0 follows channel 0; keypoints 1-3 score nothing: the grid's centre
    tokens = torch.zeros(2, 16, 8)
    tokens[0, 4 * 1 + 3, 0] = 1.0  # row 1, column 3
    tokens[1, 4 * 3 + 0, 0] = 1.0  # row 3, column 0
    out = pool.keypoints(tokens)  # (2, 4, 2)
    torch.testing.assert_close(out[:, 0], torch.tensor([[1.0, -1 / 3], [-1.0, 1.0]]), atol=1e-3, rtol=0)
    torch.testing.assert_close(out[:, 1:], torch.zeros(2, 3, 2), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="not whole frames of a 4 x 4"):
        pool(torch.randn(2, 17, 8))
    enc = build_encoder("toto", checkpoint=str(tiny_toto_run(tmp_path)), pooling="keypoints")
    x = frames(2, 32, 32)
    enc.save_pretrained(tmp_path / "saved")
    torch.testing.assert_close(enc.eval()(x), load_encoder(tmp_path / "saved").eval()(x))
    assert enc(x).shape == (2, enc.feature_dim) and build_encoder("mae_tiny", pooling="keypoints")(frames(1, 64, 64)).shape == (1, 192)


def test_running_standardize_follows_the_training_batches_and_only_them():
    """The first training batches are averaged exactly (two batches give the statistics of both together),
    later ones with weight ``momentum``; evaluation and no-grad forwards use the statistics and never
    change them; the keypoints pool's output is its keypoints standardised."""
    from toto_robot.encoders.base import RunningStandardize, build_pool

    torch.manual_seed(0)
    a, b = torch.randn(64, 3) * 0.001 + 5.0, torch.randn(32, 3) * 0.002 + 5.01
    norm = RunningStandardize(3, momentum=0.01)
    norm(a)
    norm(b)
    both = torch.cat([a, b]).double()
    torch.testing.assert_close(norm.mean.double(), both.mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(norm.var.double(), both.var(0, unbiased=False), atol=0, rtol=1e-3)
    out = norm(torch.cat([a, b]))  # a third batch, already described by the statistics
    assert out.mean(0).abs().max() < 0.05 and (out.std(0) - 1).abs().max() < 0.05
    before = norm.mean.clone()
    norm.eval()(torch.full((8, 3), 100.0))
    with torch.no_grad():
        norm.train()(torch.full((8, 3), 100.0))
    assert torch.equal(norm.mean, before)
    norm(torch.full((8, 3), 6.0))  # still exact: 8 of 200 samples
    torch.testing.assert_close(norm.mean, before + 8 / 200 * (6.0 - before), atol=1e-5, rtol=0)
    before = norm.mean.clone()
    norm.count.fill_(1e6)
    norm(torch.full((8, 3), 6.0))  # past the exact phase: the weight is momentum, not 8 / 1000008
    torch.testing.assert_close(norm.mean, before + 0.01 * (6.0 - before), atol=1e-5, rtol=0)

    pool = build_pool("keypoints", 8, grid=4)
    tokens = torch.randn(16, 16, 8)
    out = pool(tokens)  # a training forward: the first batch sets the statistics
    torch.testing.assert_close(out, (pool.keypoints(tokens).reshape(16, 8) - pool.standardize.mean) / pool.standardize.var.sqrt(), atol=1e-4, rtol=0)
    assert out.std(0).min() > 0.9 and pool.keypoints(tokens).std(0).max() < 0.5


def test_spatial_attention_codes_repeat_per_frame_and_need_whole_frames(tmp_path):
    from toto_robot.encoders.base import build_pool

    pool = build_pool("spatial_attention", 16, grid=4)
    codes = pool.position_codes(3 * 16, torch.device("cpu"))
    torch.testing.assert_close(codes[:16], codes[32:])
    assert not torch.equal(codes[0], codes[5])
    with pytest.raises(ValueError, match="not whole frames of a 4 x 4"):
        pool(torch.randn(2, 17, 16))
    enc = build_encoder("toto", checkpoint=str(tiny_toto_run(tmp_path)), pooling="spatial_attention")
    assert enc.pool.grid == enc.token_grid == 4
    x = frames(2, 32, 32)
    enc.save_pretrained(tmp_path / "saved")
    torch.testing.assert_close(enc.eval()(x), load_encoder(tmp_path / "saved").eval()(x))
    vit = build_encoder("mae_tiny", pooling="spatial_attention")
    assert vit.pool.grid == 8 and vit(frames(1, 64, 64)).shape == (1, 192)


@pytest.mark.parametrize("positions", [False, True])
def test_attention_pool_equals_projecting_every_token(positions):
    """The factored pool (projections on the mixed token) is the textbook one (keys and values of all N
    tokens, then attention): same outputs and same gradients, biases included."""
    from toto_robot.encoders import AttentionPool

    torch.manual_seed(0)
    pool = AttentionPool(48, num_heads=8, positions=positions, grid=4).double()
    with torch.no_grad():
        for p in pool.parameters():
            p.normal_(0, 0.5)
    tokens = torch.randn(5, 32, 48, dtype=torch.float64)  # two frames of a 4 x 4 grid

    def reference(x):
        B, N, C = x.shape
        h = pool.num_heads
        x = pool.norm(x)
        if positions:
            x = x + pool.position_codes(N, x.device)
        q = pool.query.expand(B, -1, -1).reshape(B, 1, h, C // h).transpose(1, 2)
        k = pool.k(x).reshape(B, N, h, C // h).transpose(1, 2)
        v = pool.v(x).reshape(B, N, h, C // h).transpose(1, 2)
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, C)

    ours, ref = pool(tokens), reference(tokens)
    assert ours.shape == (5, 48)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    grads = [torch.autograd.grad(f(tokens).square().sum(), list(pool.parameters()), allow_unused=True) for f in (pool, reference)]
    for name, a, b in zip([n for n, _ in pool.named_parameters()], *grads):
        if name == "k.bias":  # cancels in the softmax: no gradient in either form
            assert a is None or a.abs().max() < 1e-10
            assert b.abs().max() < 1e-10
            continue
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=name)


def test_bfloat16_backbone_gives_float32_tokens_close_to_float32_and_is_saved_with_the_encoder(tmp_path):
    from toto_robot.encoders.features import token_cache_path
    from toto_robot.utils.config import ConfigError

    final = tiny_toto_run(tmp_path, tokenizer="patch")
    exact = build_encoder("toto", checkpoint=str(final), pooling="average", layer=2)
    fast = build_encoder("toto", checkpoint=str(final), pooling="average", layer=2, precision="bfloat16")
    x = frames(4, 40, 40)
    a, b = exact.encode_tokens(x), fast.encode_tokens(x)
    assert b.dtype == torch.float32 and b.shape == a.shape
    rel = ((a - b).norm() / a.norm()).item()
    assert 0 < rel < 0.02  # bfloat16 matmuls: not bit-exact, within 2% of the float32 tokens
    assert torch.equal(fast(x), fast.pool(b))
    fast.save_pretrained(tmp_path / "enc")
    again = load_encoder(tmp_path / "enc")
    assert again.precision == "bfloat16" and torch.equal(again.encode_tokens(x), b)
    exact.save_pretrained(tmp_path / "exact")
    assert load_encoder(tmp_path / "exact").precision == "float32"
    # a cache of bfloat16 tokens is never read back as the float32 encoder's
    assert token_cache_path(exact, tmp_path, {"x": 1}) != token_cache_path(fast, tmp_path, {"x": 1})
    vit = build_encoder("random", img_size=32, pooling="cls", precision="bfloat16")
    assert vit.encode_tokens(x).dtype == torch.float32
    with pytest.raises(ConfigError, match="precision must be one of float32, bfloat16, got 'fp8'"):
        build_encoder("toto", checkpoint=str(final), precision="fp8")
