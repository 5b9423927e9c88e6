"""Tokenizers: training improves reconstruction, DALL-E layout loads, inputs are validated."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from toto_robot.data.synthetic import moving_shapes
from toto_robot.tokenizers import DVAETokenizer, PatchTokenizer, TokenizerInputError, VQTokenizer, load_dalle_weights, load_tokenizer
from toto_robot.tokenizers.training import TokenizerTrainConfig, evaluate_psnr, train_tokenizer
from toto_robot.utils.io import CheckpointError

TINY_DVAE = dict(vocab_size=64, n_hid=16, n_blk_per_group=1, n_init=16)


def frames(n=48, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([moving_shapes(8, size, 2, rng)[0] for _ in range(n // 8)])


@pytest.mark.parametrize("kind,params", [("dvae", TINY_DVAE), ("vq", dict(vocab_size=64, width=16, code_dim=8))])
def test_training_improves_heldout_reconstruction_and_round_trips(tmp_path, kind, params):
    data = frames()
    torch.manual_seed(0)
    from toto_robot.tokenizers import build_tokenizer

    before = evaluate_psnr(build_tokenizer(kind, **params).eval(), data)
    out = train_tokenizer(TokenizerTrainConfig(kind=kind, params=params, steps=60, batch_size=16, lr=3e-3, out_dir=str(tmp_path / kind)), data)
    tok = load_tokenizer(out)
    after = evaluate_psnr(tok, data)
    assert after > before + 3, (before, after)
    codes = tok.encode(torch.from_numpy(data[:4]))
    assert codes.shape == (4, 4, 4) and codes.dtype == torch.long and codes.max() < 64
    assert tok.decode(codes).shape == (4, 32, 32, 3)
    assert (out / "recon.png").stat().st_size > 1000 and (out / "metrics.json").exists()


def test_patch_tokens_are_exactly_invertible_and_targets_normalized():
    tok = PatchTokenizer(8)
    x = torch.from_numpy(frames(8))
    codes = tok.encode(x)
    assert codes.shape == (8, 4, 4, 192)
    assert torch.equal(tok.decode(codes), x)
    t = tok.targets(codes)
    torch.testing.assert_close(t.mean(-1), torch.zeros(8, 4, 4), atol=1e-4, rtol=0)


def test_vq_restarts_dead_codes():
    tok = VQTokenizer(vocab_size=32, width=8, code_dim=4, dead_after=2).train()
    x = torch.from_numpy(frames(16)).permute(0, 3, 1, 2).float() / 255
    tok.codebook[5:] += 100.0  # far from every encoder output: dead
    for step in range(4):
        _, m = tok.training_loss(x, step, 4)
    assert (tok.codebook[5:].abs().max(1).values < 50).all(), "dead codes were not restarted"
    used, ppl = tok.usage()
    assert 0 < used <= 1 and ppl >= 1


def test_dalle_loader_maps_every_parameter_of_the_official_layout(tmp_path):
    full = DVAETokenizer(**TINY_DVAE)
    torch.manual_seed(1)
    ref = DVAETokenizer(**TINY_DVAE)
    enc_sd, dec_sd = ref.encoder.state_dict(), ref.decoder.state_dict()
    # the public dall_e package's names, spelled out for a few keys
    for key in ["blocks.input.w", "blocks.group_1.block_1.res_path.conv_4.b", "blocks.group_4.block_1.id_path.w", "blocks.output.conv.w"]:
        assert key in enc_sd
    for key in ["blocks.input.w", "blocks.group_1.block_1.id_path.w", "blocks.output.conv.b"]:
        assert key in dec_sd
    torch.save(enc_sd, tmp_path / "enc.pt")
    torch.save(dec_sd, tmp_path / "dec.pt")
    load_dalle_weights(full, tmp_path / "enc.pt", tmp_path / "dec.pt")
    for k, v in enc_sd.items():
        assert torch.equal(full.encoder.state_dict()[k], v)
    bad = dict(enc_sd)
    bad["blocks.extra.w"] = bad.pop("blocks.input.w")
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): blocks.input.w"):
        load_dalle_weights(full, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_dalle_weights(full, tmp_path / "nope.pt")


def test_full_size_dvae_has_the_dalle_shape():
    with torch.device("meta"):
        tok = DVAETokenizer()
    assert tok.encoder.blocks.output.conv.w.shape == (8192, 2048, 1, 1)
    assert tok.decoder.blocks.input.w.shape == (128, 8192, 1, 1)
    assert tok.downsample == 8


def test_bad_frames_and_codes_are_named():
    tok = DVAETokenizer(**TINY_DVAE)
    with pytest.raises(TokenizerInputError, match="uint8"):
        tok.encode(torch.zeros(1, 32, 32, 3))
    with pytest.raises(TokenizerInputError, match="channels-first"):
        tok.encode(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TokenizerInputError, match="not divisible"):
        tok.encode(torch.zeros(1, 30, 32, 3, dtype=torch.uint8))
    with pytest.raises(TokenizerInputError, match="outside the tokenizer vocabulary"):
        tok.decode(torch.full((1, 4, 4), 64))


def test_published_dalle_pickles_load_without_their_package_and_without_running_code(tmp_path, monkeypatch):
    """encoder.pkl / decoder.pkl are whole ``dall_e`` modules pickled with torch.save; they load as they
    are, with no ``dall_e`` package, and a pickle that would run a command runs nothing."""
    import sys
    import types

    from toto_robot.tokenizers.dvae import DalleEncoder

    fake = types.ModuleType("dall_e.encoder")
    Encoder = type("Encoder", (DalleEncoder,), {"__module__": "dall_e.encoder"})
    fake.Encoder = Encoder
    monkeypatch.setitem(sys.modules, "dall_e", types.ModuleType("dall_e"))
    monkeypatch.setitem(sys.modules, "dall_e.encoder", fake)
    torch.manual_seed(2)
    module = Encoder(n_hid=TINY_DVAE["n_hid"], n_blk_per_group=TINY_DVAE["n_blk_per_group"], vocab_size=TINY_DVAE["vocab_size"])
    module.device = torch.device("cpu")  # dall_e's modules carry attributes like these
    torch.save(module, tmp_path / "encoder.pkl")
    monkeypatch.delitem(sys.modules, "dall_e.encoder")
    monkeypatch.delitem(sys.modules, "dall_e")
    with pytest.raises(Exception):
        torch.load(tmp_path / "encoder.pkl")  # torch's default (weights_only) refuses it
    tok = DVAETokenizer(**TINY_DVAE)
    load_dalle_weights(tok, tmp_path / "encoder.pkl")
    for k, v in module.state_dict().items():
        assert torch.equal(tok.encoder.state_dict()[k], v), k

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    torch.save({"x": Evil()}, tmp_path / "evil.pkl")
    with pytest.raises(CheckpointError, match="no nn.Module parameters"):
        load_dalle_weights(tok, tmp_path / "evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("kind,params", [("dvae", TINY_DVAE), ("vq", {"vocab_size": 32, "width": 16, "code_dim": 8, "downsample": 4})])
def test_encoder_settings_change_speed_not_codes(kind, params):
    from toto_robot.tokenizers import build_tokenizer

    torch.manual_seed(0)
    tok = build_tokenizer(kind, **params).eval()
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    fast = tok.encode(frames)
    assert not fast.is_inference() and fast.dtype == torch.long
    fast += 0  # callers may modify the codes in place
    with tok.encode_settings(channels_last=False, inference_mode=False):
        plain = tok.encode(frames)
    assert torch.equal(fast, plain)
