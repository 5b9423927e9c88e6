"""The Toto decoder: sizes, hidden states, KV cache, HF parity, patch regression, persistence."""
from __future__ import annotations

import pytest
import torch

from toto_robot.model import KVCache, Toto, TotoConfig
from toto_robot.model.gpt2 import GPT2, GPT2Config
from toto_robot.utils.io import CheckpointError


@pytest.mark.parametrize("name,paper", [("toto_base", 120e6), ("toto_large", 280e6), ("toto_1b", 1.1e9)])
def test_named_sizes_match_the_paper_parameter_counts(name, paper):
    with torch.device("meta"):
        model = Toto(TotoConfig.from_name(name))
    assert abs(model.num_params() - paper) / paper < 0.05, model.num_params()


def tiny(**kw):
    torch.manual_seed(0)
    return Toto(TotoConfig.from_name("toto_tiny", **kw)).eval()


def test_hidden_states_come_from_the_same_pass_and_features_stop_early():
    m = tiny()
    x = torch.randint(0, m.config.vocab_size, (2, 40))
    out = m(x, return_layers=[0, 2, 4])
    assert out.logits.shape == (2, 40, m.config.vocab_size)
    assert set(out.hidden) == {0, 2, 4} and out.hidden[2].shape == (2, 40, 128)
    assert torch.equal(out.hidden[0], m.tok_emb(x))
    feats = m.features(x, [2])
    torch.testing.assert_close(feats[2], out.hidden[2])


def test_kv_cache_matches_full_forward():
    m = tiny()
    x = torch.randint(0, m.config.vocab_size, (2, 30))
    full = m(x).logits
    cache = KVCache()
    parts = [m(x[:, :17], cache=cache).logits] + [m(x[:, i:i + 1], cache=cache).logits for i in range(17, 30)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-4)
    g = m.generate(x[:, :5], 8, generator=torch.Generator().manual_seed(0))
    assert g.shape == (2, 13) and torch.equal(g[:, :5], x[:, :5])


def test_logits_equal_transformers_llama_on_the_same_weights():
    pytest.importorskip("transformers")
    from toto_robot.model.hf import export_hf, import_hf

    m = tiny(n_layer=2, tie_embeddings=False)
    hf = export_hf(m)
    x = torch.randint(0, m.config.vocab_size, (2, 64))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, m(x).logits, atol=1e-4, rtol=0)
        back = import_hf(hf)
        torch.testing.assert_close(back(x).logits, m(x).logits, atol=1e-4, rtol=0)


def test_bad_inputs_are_named():
    m = tiny()
    with pytest.raises(ValueError, match="exceeds the model's context"):
        m(torch.zeros(1, m.config.block_size + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab mismatch"):
        m(torch.full((1, 4), m.config.vocab_size))
    with pytest.raises(ValueError, match="integer token ids"):
        m(torch.zeros(1, 4))


def test_patch_regression_head_learns_a_predictable_sequence():
    torch.manual_seed(0)
    m = Toto(TotoConfig.from_name("toto_tiny", input_dim=12, n_layer=2)).train()
    base = torch.randn(1, 1, 12)
    x = base.repeat(8, 20, 1) + 0.01 * torch.randn(8, 20, 12)  # every patch equals the first
    opt = m.configure_optimizer(3e-3, 0.0)
    first = None
    for _ in range(60):
        loss = m(x, targets=x).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


def test_save_and_load_round_trip_and_corrupt_checkpoint(tmp_path):
    m = tiny()
    m.save_pretrained(tmp_path / "ckpt")
    back = Toto.from_pretrained(tmp_path / "ckpt").eval()
    x = torch.randint(0, m.config.vocab_size, (1, 10))
    torch.testing.assert_close(back(x).logits, m(x).logits)
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt weights"):
        Toto.from_pretrained(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        Toto.from_pretrained(tmp_path / "nope")


def test_gpt2_variant_has_the_same_contract():
    m = GPT2(GPT2Config()).eval()
    x = torch.randint(0, 516, (2, 16))
    out = m(x, targets=x, return_layers=[1])
    assert out.logits.shape == (2, 16, 516) and out.hidden[1].shape == (2, 16, 128) and out.loss > 0
